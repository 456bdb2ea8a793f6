"""The admin's view of the audit log: search, CSV export, chain verification."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time, timezone

from sqlmodel import select

from core import audit
from core.audit import ChainReport
from core.db.models import AuditEvent
from core.runtime import get_runtime
from core.security import Actor, Permission, service
from core.timeutil import as_utc

CSV_COLUMNS = ("seq", "ts", "username", "role", "action", "object_type", "object_id", "outcome",
               "detail", "prev_hash", "hash")


@dataclass(frozen=True)
class AuditRow:
    seq: int
    ts: datetime
    username: str
    role: str
    action: str
    object_type: str
    object_id: str
    outcome: str
    detail: str
    prev_hash: str
    hash: str


def _query(username: str | None, action: str | None, outcome: str | None,
           date_from: date | None, date_to: date | None, limit: int) -> list[AuditRow]:
    with get_runtime().session() as s:
        stmt = select(AuditEvent)
        if username:
            stmt = stmt.where(AuditEvent.username == username.strip().lower())
        if action:
            stmt = stmt.where(AuditEvent.action.like(f"{action.strip()}%"))  # type: ignore[attr-defined]
        if outcome:
            stmt = stmt.where(AuditEvent.outcome == outcome)
        if date_from:
            stmt = stmt.where(AuditEvent.ts >= datetime.combine(date_from, time.min, timezone.utc))
        if date_to:
            stmt = stmt.where(AuditEvent.ts <= datetime.combine(date_to, time.max, timezone.utc))
        rows = s.exec(stmt.order_by(AuditEvent.seq.desc()).limit(max(1, min(limit, 100_000)))).all()  # type: ignore[attr-defined]
        return [AuditRow(r.seq, as_utc(r.ts), r.username, r.role, r.action, r.object_type,  # type: ignore[arg-type]
                         r.object_id, r.outcome, r.detail, r.prev_hash, r.hash) for r in rows]


@service(Permission.AUDIT_READ)
def search_events(actor: Actor, username: str | None = None, action: str | None = None,
                  outcome: str | None = None, date_from: date | None = None,
                  date_to: date | None = None, limit: int = 500) -> list[AuditRow]:
    return _query(username, action, outcome, date_from, date_to, limit)


@service(Permission.AUDIT_READ)
def export_csv(actor: Actor, username: str | None = None, action: str | None = None,
               outcome: str | None = None, date_from: date | None = None,
               date_to: date | None = None, limit: int = 100_000) -> str:
    rows = _query(username, action, outcome, date_from, date_to, limit)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([r.seq, r.ts.isoformat(), r.username, r.role, r.action, r.object_type,
                    r.object_id, r.outcome, r.detail, r.prev_hash, r.hash])
    audit.record(get_runtime().engine, actor.username, actor.role, "audit.export", "success",
                 detail=f"rows={len(rows)}")
    return buf.getvalue()


@service(Permission.AUDIT_READ)
def verify(actor: Actor) -> ChainReport:
    rt = get_runtime()
    report = audit.verify_chain(rt.engine)
    audit.record(rt.engine, actor.username, actor.role, "audit.verify",
                 "success" if report.ok else "failure",
                 detail=f"checked={report.checked}" + ("" if report.ok else f" first_bad={report.first_bad_seq}"))
    return report
