"""Append-only, hash-chained audit log.

Each event stores the hash of the previous one; its own hash covers its fields and that link.
Editing, deleting or re-ordering any row breaks the chain at that row, and `verify_chain` says
where. Events hold who, role, action, object, time and outcome: never pixel data or PHI values.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import select

from core.db.engine import session_scope
from core.db.models import AuditEvent, utcnow

GENESIS = "0" * 64
_PG_LOCK_ID = 0x4D53_4155  # "MSAU": serialises appends across processes on PostgreSQL


def _ts_text(ts: datetime) -> str:
    if ts.tzinfo is None:  # SQLite hands back naive datetimes; we only ever store UTC
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(ev: AuditEvent) -> str:
    payload = [
        ev.seq, _ts_text(ev.ts), ev.username, ev.role, ev.action, ev.object_type,
        ev.object_id, ev.outcome, ev.detail, ev.prev_hash,
    ]
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(raw.encode()).hexdigest()


def record(
    engine: Engine,
    username: str,
    role: str,
    action: str,
    outcome: str,
    *,
    object_type: str = "",
    object_id: str | int = "",
    detail: str = "",
) -> AuditEvent:
    """Append one event. Safe under concurrency (SQLite BEGIN IMMEDIATE, PostgreSQL advisory lock)."""
    return record_many(engine, username, role, [(action, outcome, object_type, object_id, detail)])[0]


def record_many(
    engine: Engine, username: str, role: str, events: list[tuple[str, str, str, str | int, str]],
) -> list[AuditEvent]:
    """Append several events of one actor, (action, outcome, object_type, object_id, detail) each, in
    one transaction: one chain lock for a batch (an ingest of many files) instead of one per event."""
    out: list[AuditEvent] = []
    if not events:
        return out
    with session_scope(engine) as s:
        if engine.dialect.name == "postgresql":
            s.exec(text(f"SELECT pg_advisory_xact_lock({_PG_LOCK_ID})"))  # type: ignore[call-overload]
        last = s.exec(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).first()  # type: ignore[union-attr]
        seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
        for action, outcome, object_type, object_id, detail in events:
            seq += 1
            ev = AuditEvent(
                seq=seq,
                ts=utcnow(),
                username=(username or "")[:64],
                role=(role or "")[:16],
                action=action[:48],
                object_type=object_type[:32],
                object_id=str(object_id)[:64],
                outcome=outcome[:16],
                detail=detail[:2000],
                prev_hash=prev,
                hash="",
            )
            ev.hash = prev = event_hash(ev)
            s.add(ev)
            out.append(ev)
    return out


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str = ""


def verify_chain(engine: Engine, batch: int = 5000) -> ChainReport:
    """Walk the chain in order; report the first event whose link or content does not match."""
    prev_hash, expected_seq, checked = GENESIS, 1, 0
    with session_scope(engine) as s:
        offset = 0
        while True:
            rows = s.exec(
                select(AuditEvent).order_by(AuditEvent.seq).offset(offset).limit(batch)  # type: ignore[arg-type]
            ).all()
            if not rows:
                break
            for ev in rows:
                if ev.seq != expected_seq:
                    return ChainReport(False, checked, expected_seq,
                                       f"event {expected_seq} is missing (next found is {ev.seq})")
                if ev.prev_hash != prev_hash:
                    return ChainReport(False, checked, ev.seq,
                                       f"event {ev.seq} does not link to event {ev.seq - 1}")
                if event_hash(ev) != ev.hash:
                    return ChainReport(False, checked, ev.seq,
                                       f"event {ev.seq} was altered after it was written")
                prev_hash, expected_seq, checked = ev.hash, expected_seq + 1, checked + 1
            offset += len(rows)
    return ChainReport(True, checked)
