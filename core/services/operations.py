"""The admin's operations view: the health of every part (database, queue, blob store, workers, disk)
as green / amber / red, every job of the queue with cancel and retry (permission-checked here and
audited), and activity per day (audit events, failed sign-ins). Counts and states only: no PHI."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import func, select

from core import audit, taskqueue, workers
from core.db.models import AuditEvent, Job, User, Worker, utcnow
from core.errors import Conflict, NotFound
from core.runtime import get_runtime
from core.security import Actor, Permission, service
from core.timeutil import as_utc

BATCH_KINDS = ("protect", "analyze")
TRAIN_KINDS = ("train", "evaluate")
ACTIVE = ("queued", "running", "cancelling")
RETRYABLE = ("failed", "finished_with_errors", "cancelled")


@dataclass(frozen=True)
class Check:
    name: str
    state: str  # green, amber, red
    detail: str


@dataclass(frozen=True)
class WorkerRow:
    name: str
    state: str
    heartbeat_age_s: float | None
    current_task: str
    current_job_id: int | None
    tasks_done: int
    tasks_failed: int
    started_at: datetime | None


@dataclass(frozen=True)
class JobRow:
    id: int
    kind: str
    status: str
    progress: float
    owner: str
    created_at: datetime | None
    duration_s: float | None
    error: str


def _timed(fn):
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


@service(Permission.SYSTEM_READ)
def health(actor: Actor) -> tuple[list[Check], list[WorkerRow]]:
    rt = get_runtime()
    checks: list[Check] = []
    def query() -> None:
        with rt.session() as s:
            s.exec(select(func.count()).select_from(User)).one()

    try:
        ms = _timed(query)
        checks.append(Check("database", "green" if ms < 200 else "amber",
                            f"{rt.engine.dialect.name}, answered in {ms:.0f} ms"))
    except Exception as exc:  # the page must say what is down, not fail
        checks.append(Check("database", "red", f"unreachable ({type(exc).__name__})"))
    try:
        q = taskqueue.queue(rt)
        pending = int(q.huey.pending_count())
        checks.append(Check("queue", "green" if pending < 1000 else "amber", f"{q.backend}, {pending} task(s) waiting"))
    except Exception as exc:
        checks.append(Check("queue", "red", f"unreachable ({type(exc).__name__})"))
    try:
        probe = b"medshield health probe " + str(time.time()).encode()
        t = time.perf_counter()
        key, fresh = rt.store.put(probe)
        ok = rt.store.get(key) == probe
        if fresh:
            rt.store.delete(key)
        ms = (time.perf_counter() - t) * 1e3
        checks.append(Check("blob store", "green" if ok and ms < 500 else "amber", f"write, read and delete in {ms:.0f} ms"))
    except Exception as exc:
        checks.append(Check("blob store", "red", f"failed ({type(exc).__name__})"))
    try:
        du = shutil.disk_usage(rt.settings.data_dir)
        free = du.free / du.total
        checks.append(Check("disk", "green" if free > 0.15 else ("amber" if free > 0.05 else "red"),
                            f"{du.free / 2**30:.1f} GiB free of {du.total / 2**30:.1f} GiB ({free:.0%})"))
    except OSError as exc:
        checks.append(Check("disk", "red", f"unknown ({exc.strerror})"))
    now = utcnow()
    rows = []
    with rt.session() as s:
        for w in s.exec(select(Worker).where((Worker.stopped_at.is_(None))  # type: ignore[union-attr]
                                             | (Worker.heartbeat_at > now - timedelta(hours=1)))
                        .order_by(Worker.started_at.desc())).all():  # type: ignore[attr-defined]
            hb = as_utc(w.heartbeat_at)
            rows.append(WorkerRow(w.name, workers.state(hb, w.stopped_at, now), (now - hb).total_seconds() if hb else None,
                                  w.current_task, w.current_job_id, w.tasks_done, w.tasks_failed, as_utc(w.started_at)))
    alive = [r for r in rows if r.state == "green"]
    late = [r for r in rows if r.state == "amber"]
    checks.append(Check("workers", "green" if alive else ("amber" if late else "red"),
                        f"{len(alive)} alive, {len(late)} late, {sum(r.state == 'red' for r in rows)} gone"
                        + ("" if rows else ": start one with python -m core.worker")))
    return checks, rows


def _row(j: Job, owners: dict[int, str]) -> JobRow:
    start, end = as_utc(j.started_at), as_utc(j.finished_at)
    dur = ((end or utcnow()) - start).total_seconds() if start else None
    failed = (j.result or {}).get("failed") or {}
    err = j.message if j.status in ("failed", "cancelled") else (f"{len(failed)} image(s) failed" if failed else "")
    return JobRow(j.id, j.kind, j.status, float(j.progress or 0.0), owners.get(j.created_by, ""),  # type: ignore[arg-type]
                  as_utc(j.created_at), dur, (err or "")[:300])


@service(Permission.JOB_MANAGE)
def list_all_jobs(actor: Actor, status: str | None = None, limit: int = 200) -> list[JobRow]:
    with get_runtime().session() as s:
        stmt = select(Job).order_by(Job.id.desc()).limit(max(1, min(limit, 2000)))  # type: ignore[union-attr]
        if status:
            stmt = stmt.where(Job.status == status)
        jobs = s.exec(stmt).all()
        owners = {u.id: u.username for u in s.exec(select(User)).all()}
        return [_row(j, owners) for j in jobs]


def _lock(rt, s, job_id: int) -> Job:
    stmt = select(Job).where(Job.id == job_id)
    if rt.engine.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    job = s.exec(stmt).first()
    if job is None:
        raise NotFound(f"No job with id {job_id}.")
    return job


@service(Permission.JOB_MANAGE)
def cancel(actor: Actor, job_id: int) -> str:
    """Cancel a queued or running job: a batch stops taking images (each one is all-or-nothing), a
    training or evaluation stops at its next batch and registers nothing. Returns the new status."""
    rt = get_runtime()
    with rt.session() as s:
        job = _lock(rt, s, job_id)
        if job.status not in ACTIVE:
            raise Conflict(f"Job {job_id} is {job.status}: only queued or running jobs can be cancelled.")
        if job.kind in TRAIN_KINDS and job.status != "queued":
            job.status, job.message = "cancelling", f"cancel requested by {actor.username}"
        else:
            job.status, job.finished_at, job.message = "cancelled", utcnow(), f"cancelled by {actor.username}"
        s.add(job)
        new = job.status
        kind = job.kind
    audit.record(rt.engine, actor.username, actor.role, "job.cancel", "success", object_type="job", object_id=job_id,
                 detail=f"kind={kind} status={new}")
    return new


@service(Permission.JOB_MANAGE)
def retry(actor: Actor, job_id: int) -> int:
    """Run a failed or cancelled job again. A batch re-enqueues only its images that did not finish
    (the tasks are idempotent: a protected image is never sealed twice) and keeps its id; a training or
    evaluation starts as a new job with the same parameters. Returns the id of the job that runs."""
    rt = get_runtime()
    with rt.session() as s:
        job = _lock(rt, s, job_id)
        if job.status not in RETRYABLE:
            raise Conflict(f"Job {job_id} is {job.status}: only failed or cancelled jobs can be retried.")
        kind = job.kind
        if kind in BATCH_KINDS:
            done = set(job.result.get("done", []))
            todo = [i for i in job.params.get("image_ids", []) if i not in done]
            job.result = {"done": sorted(done), "failed": {}}
            job.status, job.finished_at, job.message = "queued", None, f"retried by {actor.username}"
            job.progress = len(done) / max(1, len(job.params.get("image_ids", [])))
            s.add(job)
            target = job.id
        elif kind == "pacs_pull":  # resumes: instances already pulled are skipped
            job.status, job.finished_at, job.message = "queued", None, f"retried by {actor.username}"
            s.add(job)
            target, todo = job.id, []
        elif kind in TRAIN_KINDS:
            new = Job(kind=kind, status="queued", created_by=actor.user_id, params=dict(job.params),
                      result={}, message=f"retry of job {job_id} by {actor.username}")
            s.add(new)
            s.flush()
            target, todo = new.id, []
        else:
            raise Conflict(f"Jobs of kind {kind!r} cannot be retried.")
    q = taskqueue.queue(rt)
    if kind in BATCH_KINDS:
        import core.jobs  # noqa: F401  (the batch tasks' owner registers them)

        task = q.protect_one if kind == "protect" else q.analyze_one
        for image_id in todo:
            task(target, image_id)
    elif kind == "pacs_pull":
        import core.services.pacs  # noqa: F401  (registers the pull task)

        q.pacs_pull(target)
    else:
        import core.services.training  # noqa: F401

        (q.train_model if kind == "train" else q.evaluate_model)(target)
    audit.record(rt.engine, actor.username, actor.role, "job.retry", "success", object_type="job", object_id=job_id,
                 detail=f"kind={kind} runs_as={target}")
    return target


@service(Permission.AUDIT_READ)
def activity(actor: Actor, days: int = 30) -> dict[str, dict[str, int]]:
    """Per day (UTC, ISO date): all audit events, failed sign-ins (password or code), refusals."""
    since = utcnow() - timedelta(days=max(1, min(days, 365)))
    with get_runtime().session() as s:
        rows = s.exec(select(AuditEvent.ts, AuditEvent.action, AuditEvent.outcome)
                      .where(AuditEvent.ts >= since)).all()
    events, failed, denied = Counter(), Counter(), Counter()
    for ts, action, outcome in rows:
        day = as_utc(ts).date().isoformat()
        events[day] += 1
        if action in ("auth.login", "auth.2fa") and outcome in ("failure", "denied"):
            failed[day] += 1
        if outcome == "denied":
            denied[day] += 1
    return {"events": dict(events), "failed_sign_ins": dict(failed), "denied": dict(denied)}
