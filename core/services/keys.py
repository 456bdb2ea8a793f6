"""Master-key rotation: re-wraps every image's data key; ciphertexts are not touched."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sqlmodel import select

from core import audit
from core.crypto.keys import unwrap_data_key, wrap_data_key
from core.db.models import Image
from core.runtime import get_runtime
from core.security import Actor, Permission, service


@dataclass(frozen=True)
class RotationReport:
    new_key_id: str
    rewrapped: int


@service(Permission.KEY_MANAGE)
def key_status(actor: Actor) -> dict[str, int | str | bool]:
    rt = get_runtime()
    with rt.session() as s:
        rows = s.exec(select(Image.dek_key_id).where(Image.dek_key_id.is_not(None))).all()  # type: ignore[union-attr]
    current = rt.keyring.current.id
    return {"current_key_id": current, "images_sealed": len(rows),
            "images_on_older_key": sum(1 for k in rows if k != current),
            "rotation_in_progress": rt.keyring.previous is not None, "from_environment": rt.keyring.from_env}


@service(Permission.KEY_MANAGE)
def rotate_master_key(actor: Actor, progress: Callable[[int, int], None] | None = None,
                      batch: int = 200) -> RotationReport:
    """Make a new master key and re-wrap every data key under it, batch by batch. Interrupted,
    it resumes on the next call (the previous key is kept until every row is re-wrapped)."""
    rt = get_runtime()
    ring = rt.keyring
    new = ring.begin_rotation()
    with rt.session() as s:
        todo = s.exec(select(Image.id).where(Image.dek_key_id.is_not(None),  # type: ignore[union-attr]
                                             Image.dek_key_id != new.id)).all()
    done = 0
    for start in range(0, len(todo), batch):
        ids = todo[start:start + batch]
        with rt.session() as s:
            for img in s.exec(select(Image).where(Image.id.in_(ids))).all():  # type: ignore[union-attr]
                old = ring.by_id(img.dek_key_id)  # type: ignore[arg-type]
                dek = unwrap_data_key(old, img.id, bytes(img.dek_wrapped))  # type: ignore[arg-type]
                img.dek_wrapped, img.dek_key_id = wrap_data_key(new, img.id, dek), new.id  # type: ignore[arg-type]
                s.add(img)
        done += len(ids)
        if progress:
            progress(done, len(todo))
    from core.services import twofactor

    seeds = twofactor.rewrap(new)  # the TOTP seeds, wrapped by the same master key
    from core.services import pacs_nodes

    pacs = pacs_nodes.rewrap(new)  # PACS passwords and tokens
    ring.finish_rotation()
    audit.record(rt.engine, actor.username, actor.role, "key.rotate", "success",
                 object_type="master_key", object_id=new.id, detail=f"rewrapped={done} totp={seeds} pacs={pacs}")
    return RotationReport(new.id, done)
