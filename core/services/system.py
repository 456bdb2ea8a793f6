"""The admin's System view: health, queue, jobs, models and storage. Counts only, no PHI."""

from __future__ import annotations

from dataclasses import dataclass, field

from alembic.migration import MigrationContext
from sqlmodel import func, select

from core.db.models import AuditEvent, Image, Job, Patient, Region, User
from core.runtime import get_runtime
from core.security import Actor, Permission, service


@dataclass
class SystemStatus:
    database: str
    schema_revision: str | None
    queue_backend: str
    queue_pending: int | None
    counts: dict[str, int] = field(default_factory=dict)
    images_by_status: dict[str, int] = field(default_factory=dict)
    jobs_by_status: dict[str, int] = field(default_factory=dict)
    blob_store_mb: float = 0.0
    audit_chain_ok: bool | None = None


@service(Permission.SYSTEM_READ)
def system_status(actor: Actor, verify_audit: bool = False) -> SystemStatus:
    from core import audit, taskqueue

    rt = get_runtime()
    with rt.engine.connect() as c:
        revision = MigrationContext.configure(c).get_current_revision()
    q = taskqueue.queue(rt)
    try:
        pending = int(q.huey.pending_count())
    except Exception:  # the queue's store unreachable: report, do not fail the page
        pending = None
    with rt.session() as s:
        def n(model) -> int:
            return int(s.exec(select(func.count()).select_from(model)).one())

        counts = {"users": n(User), "patients": n(Patient), "images": n(Image), "sealed regions": n(Region),
                  "audit events": n(AuditEvent), "jobs": n(Job)}
        by_status = dict(s.exec(select(Image.status, func.count()).group_by(Image.status)).all())  # type: ignore[arg-type]
        jobs_by = dict(s.exec(select(Job.status, func.count()).group_by(Job.status)).all())  # type: ignore[arg-type]
    try:
        size = rt.store.size_bytes()
    except Exception:  # an object store that does not answer: the page says so elsewhere (health)
        size = 0
    return SystemStatus(
        database=f"{rt.engine.dialect.name} ({rt.engine.url.render_as_string(hide_password=True)})",
        schema_revision=revision, queue_backend=q.backend, queue_pending=pending, counts=counts,
        images_by_status={str(k): int(v) for k, v in by_status.items()},
        jobs_by_status={str(k): int(v) for k, v in jobs_by.items()}, blob_store_mb=size / 2**20,
        audit_chain_ok=audit.verify_chain(rt.engine).ok if verify_audit else None)
