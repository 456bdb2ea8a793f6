"""Model registry: shipped weights are registered with their SHA-256 and metrics; the deployed
version of each task is what inference loads, after checking the file against its checksum."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlmodel import select

from core import bootstrap
from core.bootstrap import POSITIVE, SHIPPED  # noqa: F401  (the registry's names)
from core.config import PROJECT_ROOT
from core.db.models import ModelVersion
from core.errors import NotFound
from core.runtime import Runtime, get_runtime
from core.security import Actor, Permission, service
from core.timeutil import as_utc

@dataclass(frozen=True)
class ModelInfo:
    id: int
    task: str
    name: str
    version: str
    path: str
    sha256: str
    deployed: bool
    metrics: dict
    created_at: datetime


def _info(m: ModelVersion) -> ModelInfo:
    return ModelInfo(m.id, m.task, m.name, m.version, m.path, m.sha256, m.deployed, m.metrics or {},  # type: ignore[arg-type]
                     as_utc(m.created_at))  # type: ignore[arg-type]


def register_shipped(rt: Runtime | None = None) -> list[ModelInfo]:
    """Register every shipped weights file not yet known (see core.bootstrap); idempotent."""
    return [_info(mv) for mv in bootstrap.register_shipped(rt or get_runtime())]


def deployed(task: str, rt: Runtime | None = None) -> ModelInfo:
    rt = rt or get_runtime()
    with rt.session() as s:
        mv = s.exec(select(ModelVersion).where(ModelVersion.task == task, ModelVersion.deployed == True)).first()  # noqa: E712
        if mv is None:
            raise NotFound(f"No {task} model is deployed.")
        return _info(mv)


def local_weights(path: str, sha256: str | None = None) -> str:
    """A local file with a version's weights: the recorded path (shipped files, this machine's training
    output), else a copy fetched from the blob store by its SHA-256 into the data directory's model cache
    (so a worker or an app replica on another machine loads what any of them trained). The loaders
    verify the checksum again before they trust the file."""
    p = Path(path) if Path(path).is_absolute() else PROJECT_ROOT / path
    if p.exists() or not sha256:
        return str(p)
    rt = get_runtime()
    cache = rt.settings.data_dir / "model-cache"
    local = cache / f"{sha256}{p.suffix}"
    if not local.exists():
        data = rt.store.get(sha256)  # verified against the key, i.e. the recorded checksum
        cache.mkdir(parents=True, exist_ok=True, mode=0o750)
        tmp = local.with_suffix(local.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(local)
    return str(local)


def deployed_weights(task: str) -> tuple[str, str]:
    """(local path, sha256) of the deployed version, for a checksum-verified load."""
    info = deployed(task)
    return local_weights(info.path, info.sha256), info.sha256


@service(Permission.METRICS_READ)
def list_models(actor: Actor) -> list[ModelInfo]:
    with get_runtime().session() as s:
        return [_info(m) for m in s.exec(select(ModelVersion).order_by(ModelVersion.task, ModelVersion.id)).all()]  # type: ignore[arg-type]


@service(Permission.SYSTEM_READ)
def model_card(actor: Actor, model_id: int) -> str | None:
    """The model card (markdown) shipped or written beside a version's weights, if there is one."""
    with get_runtime().session() as s:
        mv = s.get(ModelVersion, model_id)
        if mv is None:
            raise NotFound(f"No model version {model_id}.")
        rel = mv.path
    weights = Path(rel) if Path(rel).is_absolute() else PROJECT_ROOT / rel
    for cand in (weights.with_suffix(".md"), weights.parent / "MODEL_CARD.md"):
        if cand.is_file() and cand.stat().st_size < 512_000:
            return cand.read_text(errors="replace")
    return None
