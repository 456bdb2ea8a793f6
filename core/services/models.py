"""Model registry: shipped weights are registered with their SHA-256 and metrics; the deployed
version of each task is what inference loads, after checking the file against its checksum."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlmodel import select

from core import audit
from core.config import PROJECT_ROOT
from core.db.models import ModelVersion
from core.errors import NotFound
from core.runtime import Runtime, get_runtime
from core.security import Actor, Permission, service
from core.timeutil import as_utc

SHIPPED = {  # task -> (weights, metrics file, name)
    "detector": ("models/detector/medshield-text-yolov8n.pt", "models/detector/metrics.json", "yolov8n-text"),
    "classifier-cxr": ("models/classifier/cxr-resnet18.pt", "models/classifier/cxr-resnet18.json", "resnet18-cxr"),
    "classifier-us": ("models/classifier/breast-us-resnet18.pt", "models/classifier/breast-us-resnet18.json",
                      "resnet18-breast-us"),
    "segmenter-lung": ("models/segmenter/lung-residual-unet.pt", "models/segmenter/lung-residual-unet.json",
                       "residual-unet-lung"),
    "text-verifier": ("models/verifier/medshield-text-verifier.pt", "models/verifier/training.json", "text-verifier-cnn"),
}
POSITIVE = {"classifier-cxr": "PNEUMONIA", "classifier-us": "malignant"}  # the class triage is about


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
    """Register every shipped weights file not yet known (by checksum); the first version of a
    task is deployed. Called at start-up; idempotent."""
    from core.hashing import file_sha256

    rt = rt or get_runtime()
    out = []
    for task, (rel, metrics_rel, name) in SHIPPED.items():
        path = PROJECT_ROOT / rel
        if not path.exists():
            continue
        sha = file_sha256(path)
        with rt.session() as s:
            known = s.exec(select(ModelVersion).where(ModelVersion.task == task, ModelVersion.sha256 == sha)).first()
            if known:
                out.append(_info(known))
                continue
            metrics_path = PROJECT_ROOT / metrics_rel
            metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
            n = len(s.exec(select(ModelVersion).where(ModelVersion.task == task)).all())
            any_deployed = s.exec(select(ModelVersion).where(ModelVersion.task == task, ModelVersion.deployed == True)).first()  # noqa: E712
            mv = ModelVersion(task=task, name=name, version=f"shipped-{n + 1}", path=rel, sha256=sha,
                              metrics={k: v for k, v in metrics.items() if k not in ("real_samples", "history")},
                              params={"source": "shipped"}, deployed=any_deployed is None)
            s.add(mv)
            s.flush()
            out.append(_info(mv))
        audit.record(rt.engine, "system", "system", "model.register", "success", object_type="model",
                     object_id=mv.id, detail=f"task={task} sha256={sha[:12]}")
    return out


def deployed(task: str, rt: Runtime | None = None) -> ModelInfo:
    rt = rt or get_runtime()
    with rt.session() as s:
        mv = s.exec(select(ModelVersion).where(ModelVersion.task == task, ModelVersion.deployed == True)).first()  # noqa: E712
        if mv is None:
            raise NotFound(f"No {task} model is deployed.")
        return _info(mv)


def deployed_weights(task: str) -> tuple[str, str]:
    """(absolute path, sha256) of the deployed version, for a checksum-verified load."""
    info = deployed(task)
    path = Path(info.path)
    return str(path if path.is_absolute() else PROJECT_ROOT / path), info.sha256


@service(Permission.METRICS_READ)
def list_models(actor: Actor) -> list[ModelInfo]:
    with get_runtime().session() as s:
        return [_info(m) for m in s.exec(select(ModelVersion).order_by(ModelVersion.task, ModelVersion.id)).all()]  # type: ignore[arg-type]
