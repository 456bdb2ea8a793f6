"""Train, evaluate and version models from a project's approved labels, on the task queue.

A training job builds a classifier (MONAI ResNet/DenseNet/EfficientNet), a segmenter (MONAI U-Net
variants) or a detector (ultralytics YOLO), from scratch or fine-tuned from the version deployed
for the project's model task; reports epoch, loss and validation metric as it goes; can be
cancelled queued or running; and registers a model version that records its training data
(image ids and checksums), hyper-parameters, metrics, file checksum and author. A worker that dies
leaves the job failed and no version registered (the version row is written last, in one
transaction, after the file).

Which labels train: an image of the project whose annotations a doctor approved (and marked for
training), or, for images imported with a labelled dataset and never annotated since, the
dataset's own label. Splits come from the images' split (train / val / test; unassigned = train).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import select

from core import audit
from core.db.models import Job, ModelVersion, Project, utcnow
from core.errors import Conflict, NotFound, ValidationError
from core.runtime import get_runtime
from core.security import Actor, Permission, service
from core.services.training_data import ACTIVE, JOB_KINDS, STALE_SECONDS, _locked_job, _task_type, project_examples  # noqa: F401
from core.services.training_runs import _claim, run_evaluation, run_training  # noqa: F401
from core.taskqueue import queue, register
from core.timeutil import as_utc


@dataclass(frozen=True)
class TrainingJob:
    id: int
    kind: str
    status: str
    project_id: int | None
    model_task: str
    progress: float
    epoch: int
    epochs: int
    history: list = field(default_factory=list)
    message: str = ""
    version_id: int | None = None
    metrics: dict = field(default_factory=dict)
    created_at: datetime | None = None
    finished_at: datetime | None = None


def _job_info(j: Job) -> TrainingJob:
    r = j.result or {}
    hist = list(r.get("history", []))
    return TrainingJob(j.id, j.kind, j.status, j.params.get("project_id"), j.params.get("model_task", ""),  # type: ignore[arg-type]
                       float(j.progress or 0.0), hist[-1]["epoch"] if hist else 0, int(j.params.get("epochs", 0)),
                       hist, j.message, r.get("version_id"), r.get("metrics", {}), as_utc(j.created_at),
                       as_utc(j.finished_at))


# ---------------------------------------------------------------- services

@service(Permission.MODEL_TRAIN)
def start_training(actor: Actor, project_id: int, epochs: int = 5, fine_tune: bool = True, arch: str = "resnet18",
                   size: int | None = None, lr: float | None = None, batch: int = 16, seed: int = 0) -> TrainingJob:
    """Queue a training job for the project's model task."""
    from core.ml import classifier, segmenter

    if not 1 <= int(epochs) <= 500:
        raise ValidationError("Epochs must be between 1 and 500.")
    if size is not None and not 32 <= int(size) <= 1024:
        raise ValidationError("The input size must be between 32 and 1024 pixels.")
    if not 2 <= int(batch) <= 256:
        raise ValidationError("The batch size must be between 2 and 256.")
    if lr is not None and not 0 < float(lr) < 1:
        raise ValidationError("The learning rate must be between 0 and 1.")
    p, examples = project_examples(project_id)
    if p.task_type == "classification" and arch not in classifier.ARCHS:
        raise ValidationError(f"Choose an architecture among {', '.join(classifier.ARCHS)}.")
    if p.task_type == "segmentation" and arch not in segmenter.VARIANTS:
        arch = "residual-unet"
    train = [e for e in examples if e.split == "train"]
    if len(train) < 2:
        raise ValidationError(f"Project {p.name!r} has {len(train)} approved training image(s); at least 2 are needed.")
    if p.task_type == "classification" and len({e.label for e in train}) < 2:
        raise ValidationError("The approved training images cover a single class; label some of another class.")
    with get_runtime().session() as s:
        busy = s.exec(select(Job).where(Job.kind == "train", Job.status.in_(ACTIVE))).all()  # type: ignore[attr-defined]
        if any(j.params.get("project_id") == project_id for j in busy):
            raise Conflict(f"Project {p.name!r} already has a training job queued or running.")
    params = {"project_id": project_id, "model_task": p.model_task, "task_type": p.task_type, "epochs": int(epochs),
              "fine_tune": bool(fine_tune), "arch": arch, "size": int(size) if size else None,
              "lr": float(lr) if lr else None, "batch": int(batch), "seed": int(seed)}
    return _enqueue(actor, "train", params, f"project={project_id} task={p.model_task} epochs={epochs} fine_tune={fine_tune}")


def _enqueue(actor: Actor, kind: str, params: dict, detail: str) -> TrainingJob:
    """One Job row, audited, and its task on the queue."""

    rt = get_runtime()
    with rt.session() as s:
        job = Job(kind=kind, status="queued", created_by=actor.user_id, progress=0.0,
                  params={**params, "actor": [actor.user_id, actor.username, actor.role]}, result={"history": []})
        s.add(job)
        s.flush()
        job_id = job.id
    audit.record(rt.engine, actor.username, actor.role, f"model.{kind}_start", "success", object_type="job",
                 object_id=job_id, detail=detail)
    (queue(rt).train_model if kind == "train" else queue(rt).evaluate_model)(job_id)
    return get_training_job.__wrapped__(actor, job_id)  # type: ignore[attr-defined]


@service(Permission.MODEL_TRAIN)
def start_evaluation(actor: Actor, version_id: int, project_id: int) -> TrainingJob:
    """Queue an evaluation of a version on a project's test split."""
    rt = get_runtime()
    with rt.session() as s:
        mv = s.get(ModelVersion, version_id)
        if mv is None:
            raise NotFound(f"No model version {version_id}.")
        p = s.get(Project, project_id)
        if p is None:
            raise NotFound(f"No project with id {project_id}.")
        if _task_type(mv.task) != p.task_type:
            raise ValidationError(f"{mv.name} {mv.version} is a {_task_type(mv.task)} model; project {p.name!r} is {p.task_type}.")
        params = {"project_id": project_id, "version_id": version_id, "model_task": mv.task, "task_type": p.task_type,
                  "epochs": 0}
    return _enqueue(actor, "evaluate", params, f"version={version_id} project={project_id}")


@service(Permission.MODEL_TRAIN)
def cancel_job(actor: Actor, job_id: int) -> TrainingJob:
    """A queued job is cancelled at once; a running one stops at its next batch, registering nothing."""
    rt = get_runtime()
    with rt.session() as s:
        job = _locked_job(rt, s, job_id)
        if job is None or job.kind not in JOB_KINDS:
            raise NotFound(f"No training or evaluation job {job_id}.")
        if job.status not in ACTIVE:
            raise Conflict(f"Job {job_id} is {job.status}; only queued or running jobs can be cancelled.")
        if job.status == "queued":
            job.status, job.finished_at, job.message = "cancelled", utcnow(), f"cancelled by {actor.username} before it started"
        else:
            job.status, job.message = "cancelling", f"cancel requested by {actor.username}"
        s.add(job)
        s.flush()
        info = _job_info(job)  # what this call set: the worker may finish the cancel a moment later
    audit.record(rt.engine, actor.username, actor.role, "model.job_cancel", "success", object_type="job", object_id=job_id)
    return info


@service(Permission.MODEL_TRAIN)
def get_training_job(actor: Actor, job_id: int) -> TrainingJob:
    with get_runtime().session() as s:
        job = s.get(Job, job_id)
        if job is None or job.kind not in JOB_KINDS:
            raise NotFound(f"No training or evaluation job {job_id}.")
        return _job_info(job)


@service(Permission.MODEL_TRAIN)
def list_training_jobs(actor: Actor, limit: int = 30) -> list[TrainingJob]:
    with get_runtime().session() as s:
        rows = s.exec(select(Job).where(Job.kind.in_(JOB_KINDS)).order_by(Job.id.desc()).limit(limit)).all()  # type: ignore[attr-defined,union-attr]
        return [_job_info(j) for j in rows]


@service(Permission.MODEL_TRAIN)
def evaluation_history(actor: Actor, model_task: str) -> list[dict]:
    """Every stored evaluation of the task's versions, oldest first, for charts."""
    with get_runtime().session() as s:
        rows = s.exec(select(ModelVersion).where(ModelVersion.task == model_task).order_by(ModelVersion.id)).all()
        out = []
        for mv in rows:
            for ev in (mv.metrics or {}).get("evaluations", []):
                out.append({"version_id": mv.id, "version": f"{mv.name} {mv.version}", **ev})
        return out


def recover_jobs() -> int:
    """At worker start: queued jobs are queued again (claiming is idempotent); running ones whose
    heartbeat stopped lost their worker and are marked failed, with no version registered."""
    rt = get_runtime()

    q = queue(rt)
    n = 0
    with rt.session() as s:
        rows = s.exec(select(Job).where(Job.kind.in_(JOB_KINDS), Job.status.in_(ACTIVE))).all()  # type: ignore[attr-defined]
        todo = []
        for j in rows:
            beat = float((j.result or {}).get("heartbeat") or 0)
            if j.status == "queued":
                todo.append((j.kind, j.id))
            elif time.time() - beat > STALE_SECONDS:
                j.status, j.finished_at = ("failed" if j.status == "running" else "cancelled"), utcnow()
                j.message = "the worker running this job stopped; no version was registered"
                s.add(j)
                n += 1
    for kind, job_id in todo:
        (q.train_model if kind == "train" else q.evaluate_model)(job_id)
        n += 1
    return n


@register("train_model")
def _train_task(job_id: int) -> None:
    run_training(job_id)


@register("evaluate_model")
def _evaluate_task(job_id: int) -> None:
    run_evaluation(job_id)

