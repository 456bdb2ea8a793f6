"""The blob store's upkeep (admin): copy a store to another (file:// to s3://, verified object by object,
resumable), and sweep orphans (blobs no database row points at: a crash between writing a blob and
committing its row leaves one; a blob younger than `min_age_minutes` may belong to a write in flight
and is left alone)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from sqlmodel import select

from core import audit
from core.db.models import Image, ModelVersion
from core.runtime import get_runtime
from core.security import Actor, Permission, service
from core.storage import copy_all, open_store


@dataclass(frozen=True)
class MigrationReport:
    target: str
    copied: int
    already_there: int


@service(Permission.SETTINGS_MANAGE)
def migrate_store(actor: Actor, to_url: str, progress: Callable[[int, int], None] | None = None) -> MigrationReport:
    """Copy every blob of this deployment's store to `to_url` and verify each copy (then point
    MEDSHIELD_BLOB_URL at it). The source is left as it is."""
    rt = get_runtime()
    dst = open_store(to_url, rt.settings.blob_dir)
    copied, present = copy_all(rt.store, dst, progress)
    audit.record(rt.engine, actor.username, actor.role, "store.migrate", "success", object_type="store",
                 object_id=to_url.split("?")[0][:200], detail=f"copied={copied} present={present}")
    return MigrationReport(dst.url, copied, present)


def referenced_keys() -> set[str]:
    """Every blob a row points at: images (stored file, thumbnail) and model versions (their weights)."""
    with get_runtime().session() as s:
        rows = s.exec(select(Image.blob_key, Image.thumb_key)).all()
        models = s.exec(select(ModelVersion.sha256)).all()
    return {k for row in rows for k in row if k} | set(models)


@service(Permission.SETTINGS_MANAGE)
def sweep_orphans(actor: Actor, min_age_minutes: float = 60, dry_run: bool = False) -> tuple[int, int]:
    """(orphans found, removed). Keys are read before the rows, so a blob committed meanwhile is kept."""
    rt = get_runtime()
    now = time.time()
    stored = [(k, mtime) for k, mtime in rt.store.stat_keys() if now - mtime >= min_age_minutes * 60]
    used = referenced_keys()
    orphans = [k for k, _ in stored if k not in used]
    if not dry_run:
        for k in orphans:
            rt.store.delete(k)
    audit.record(rt.engine, actor.username, actor.role, "store.sweep", "success", object_type="store",
                 detail=f"orphans={len(orphans)} removed={0 if dry_run else len(orphans)}")
    return len(orphans), 0 if dry_run else len(orphans)
