"""What every signed-in user may do with their own account."""

from __future__ import annotations

from sqlmodel import select

from core.db.models import AuditEvent
from core.runtime import get_runtime
from core.security import Actor, Permission, service
from core.services.audit_log import AuditRow
from core.timeutil import as_utc


@service(Permission.ACCOUNT_SELF)
def my_history(actor: Actor, limit: int = 200) -> list[AuditRow]:
    """The acting user's own audit trail, newest first."""
    with get_runtime().session() as s:
        rows = s.exec(select(AuditEvent).where(AuditEvent.username == actor.username)
                      .order_by(AuditEvent.seq.desc()).limit(max(1, min(limit, 2000)))).all()  # type: ignore[attr-defined]
        return [AuditRow(r.seq, as_utc(r.ts), r.username, r.role, r.action, r.object_type,  # type: ignore[arg-type]
                         r.object_id, r.outcome, r.detail, r.prev_hash, r.hash) for r in rows]


@service(Permission.ACCOUNT_SELF)
def share_keypair(actor: Actor) -> tuple[str, str]:
    """A fresh X25519 key pair (private, public) for receiving share packages. The private key is
    returned once and never stored; its making is audited (no key material in the record)."""
    from core import audit
    from core.crypto.share import generate_keypair

    pair = generate_keypair()
    audit.record(get_runtime().engine, actor.username, actor.role, "share.keygen", "success", object_type="user",
                 object_id=actor.username)
    return pair
