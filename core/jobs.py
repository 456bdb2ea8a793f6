"""Batch jobs on the task queue (core.taskqueue: Huey, SQLite-backed by default, Redis when REDIS_URL
is set): protection and analysis of many images.

Batch protection is one Job row plus one idempotent queue task per image. A task that dies with
its worker is re-enqueued when a worker starts (`recover`), and protecting an image is a single
database transaction, so a crash or restart loses no image and leaves no half-written record.

Run workers with `python -m core.worker`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import select

from core import audit
from core.db.models import Image, Job, utcnow
from core.errors import Conflict, MedShieldError, NotFound, ValidationError
from core.imaging.deid import DeidOptions
from core.runtime import Runtime, get_runtime
from core.security import Actor, Permission, service
from core.services import explain, protect
from core.taskqueue import queue, register
from core.timeutil import as_utc


@dataclass(frozen=True)
class JobInfo:
    id: int
    kind: str
    status: str
    total: int
    done: int
    failed: int
    message: str
    created_at: datetime
    finished_at: datetime | None

    @property
    def progress(self) -> float:
        return (self.done + self.failed) / self.total if self.total else 1.0


def _info(job: Job) -> JobInfo:
    total = len(job.params.get("image_ids", []))
    return JobInfo(job.id, job.kind, job.status, total, len(job.result.get("done", [])),  # type: ignore[arg-type]
                   len(job.result.get("failed", {})), job.message, as_utc(job.created_at),  # type: ignore[arg-type]
                   as_utc(job.finished_at))


def _record(job_id: int, image_id: int, error: str | None) -> None:
    """Mark one image of a job done or failed; finish the job when all are accounted for."""
    rt = get_runtime()
    with rt.session() as s:
        stmt = select(Job).where(Job.id == job_id)
        if rt.engine.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        job = s.exec(stmt).one()
        result = {"done": list(job.result.get("done", [])), "failed": dict(job.result.get("failed", {}))}
        if error is None:
            if image_id not in result["done"]:
                result["done"].append(image_id)
            result["failed"].pop(str(image_id), None)
        else:
            result["failed"][str(image_id)] = error[:300]
        job.result = result
        if job.status == "queued":
            job.status, job.started_at = "running", utcnow()
        if len(result["done"]) + len(result["failed"]) >= len(job.params.get("image_ids", [])):
            job.status = "finished" if not result["failed"] else "finished_with_errors"
            job.finished_at, job.progress = utcnow(), 1.0
            job.message = f"{len(result['done'])} {BATCH_VERBS.get(job.kind, 'done')}, {len(result['failed'])} failed"
        else:
            job.progress = (len(result["done"]) + len(result["failed"])) / max(1, len(job.params["image_ids"]))
        s.add(job)


BATCH_KINDS = ("protect", "analyze")  # one queue task per image, progress counted per image
BATCH_VERBS = {"protect": "protected", "analyze": "analysed"}


@register("analyze_one", retries=1, retry_delay=2)
def _analyze_one(job_id: int, image_id: int) -> None:
    """One image of a batch analysis. Idempotent: an image already counted is not analysed twice."""
    rt = get_runtime()
    with rt.session() as s:
        job = s.get(Job, job_id)
        if job is None or job.status == "cancelled":
            return
        params, done = dict(job.params), set(job.result.get("done", []))
    if image_id in done:
        return
    try:
        explain.analyze(Actor(*params["actor"]), image_id, task=params.get("task"), mc_passes=params.get("mc_passes", 10))
    except MedShieldError as exc:
        _record(job_id, image_id, str(exc))
    else:
        _record(job_id, image_id, None)


@service(Permission.AI_EXPLAIN)
def enqueue_analyze(actor: Actor, image_ids: list[int], task: str | None = None, mc_passes: int = 10) -> JobInfo:
    """Run the classifier over many images in the background (results go to the review queue)."""
    ids = sorted({int(i) for i in image_ids})
    if not ids:
        raise ValidationError("Choose at least one image.")
    if not 0 <= int(mc_passes) <= 100:
        raise ValidationError("Use between 0 and 100 Monte Carlo passes.")
    rt = get_runtime()
    with rt.session() as s:
        found = {i.id for i in s.exec(select(Image).where(Image.id.in_(ids))).all()}  # type: ignore[union-attr]
        if set(ids) - found:
            raise NotFound(f"No image with id {min(set(ids) - found)}.")
        job = Job(kind="analyze", status="queued", created_by=actor.user_id,
                  params={"image_ids": ids, "task": task, "mc_passes": int(mc_passes),
                          "actor": [actor.user_id, actor.username, actor.role]},
                  result={"done": [], "failed": {}})
        s.add(job)
        s.flush()
        job_id = job.id
    audit.record(rt.engine, actor.username, actor.role, "job.analyze_batch", "success", object_type="job",
                 object_id=job_id, detail=f"images={len(ids)}")
    q = queue(rt)
    for i in ids:
        q.analyze_one(job_id, i)
    return _job(job_id)


def _job(job_id: int) -> JobInfo:
    with get_runtime().session() as s:
        return _info(s.get(Job, job_id))


@register("protect_one", retries=2, retry_delay=2)
def _protect_one(job_id: int, image_id: int) -> None:
    """One image of a batch. Idempotent: an image already protected counts as done."""
    rt = get_runtime()
    with rt.session() as s:
        job = s.get(Job, job_id)
        img = s.get(Image, image_id)
        if job is None or job.status == "cancelled":
            return
        params, status = dict(job.params), (img.status if img else None)
        original_key = img.sha256 if img else None
        blob_key = img.blob_key if img else None
    if status == "protected":
        if original_key and original_key != blob_key:
            rt.store.delete(original_key)  # a crash after commit may have left the clear original
        _record(job_id, image_id, None)
        return
    actor = Actor(*params["actor"])
    try:
        protect.protect_image(actor, image_id, [], params.get("mask", "solid"),
                              DeidOptions(**params.get("deid", {})), use_detector=params.get("detect", True))
    except Conflict:
        _record(job_id, image_id, None)  # protected meanwhile by another worker
    except MedShieldError as exc:
        _record(job_id, image_id, str(exc))
    else:
        _record(job_id, image_id, None)


@service(Permission.IMAGE_PROTECT)
def enqueue_protect(actor: Actor, image_ids: list[int], mask: str = "solid",
                    deid: DeidOptions | None = None, detect: bool = True) -> JobInfo:
    """Protect many images in the background (detector boxes, de-identified headers)."""
    ids = sorted({int(i) for i in image_ids})
    if not ids:
        raise ValidationError("Choose at least one image.")
    rt = get_runtime()
    with rt.session() as s:
        found = {i.id for i in s.exec(select(Image).where(Image.id.in_(ids))).all()}  # type: ignore[union-attr]
        missing = set(ids) - found
        if missing:
            raise NotFound(f"No image with id {min(missing)}.")
        d = deid or DeidOptions()
        job = Job(kind="protect", status="queued", created_by=actor.user_id,
                  params={"image_ids": ids, "mask": mask, "detect": detect,
                          "deid": {"retain_dates_shifted": d.retain_dates_shifted,
                                   "retain_device_identity": d.retain_device_identity},
                          "actor": [actor.user_id, actor.username, actor.role]},
                  result={"done": [], "failed": {}})
        s.add(job)
        s.flush()
        job_id = job.id
    audit.record(rt.engine, actor.username, actor.role, "job.protect_batch", "success",
                 object_type="job", object_id=job_id, detail=f"images={len(ids)}")
    q = queue(rt)
    for i in ids:
        q.protect_one(job_id, i)
    return _job(job_id)


@service(Permission.IMAGE_VIEW)
def get_job(actor: Actor, job_id: int) -> JobInfo:
    with get_runtime().session() as s:
        job = s.get(Job, job_id)
        if job is None or job.kind not in BATCH_KINDS:
            raise NotFound(f"No batch job with id {job_id}.")
        return _info(job)


@service(Permission.IMAGE_VIEW)
def list_jobs(actor: Actor, limit: int = 20, kind: str = "protect") -> list[JobInfo]:
    """Batch jobs of one kind, newest first (training jobs are on the Models page)."""
    with get_runtime().session() as s:
        rows = s.exec(select(Job).where(Job.kind == kind).order_by(Job.id.desc()).limit(limit)).all()  # type: ignore[union-attr]
        return [_info(j) for j in rows]


def recover(rt: Runtime | None = None) -> int:
    """Re-enqueue every image of an unfinished job that is not yet accounted for (tasks lost with
    a killed worker). Safe to run any time: the tasks are idempotent. Returns how many."""
    rt = rt or get_runtime()
    q = queue(rt)
    n = 0
    with rt.session() as s:
        jobs = s.exec(select(Job).where(Job.kind.in_(BATCH_KINDS), Job.status.in_(("queued", "running")))).all()  # type: ignore[attr-defined]
        pending = [(j.kind, j.id, i) for j in jobs for i in j.params.get("image_ids", [])
                   if i not in j.result.get("done", []) and str(i) not in j.result.get("failed", {})]
    for kind, job_id, image_id in pending:
        (q.protect_one if kind == "protect" else q.analyze_one)(job_id, image_id)
        n += 1
    from core.services.pacs import recover_pulls  # and registers the pull task
    from core.services.training import recover_jobs  # and registers the training tasks

    return n + recover_jobs() + recover_pulls()
