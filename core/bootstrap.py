"""What a fresh deployment needs before anyone signs in: the first administrator and the shipped models'
registration (by SHA-256). Called by core.runtime.configure; uses nothing above the database layer."""

from __future__ import annotations

import json
import os
import secrets
import sys
from sqlmodel import func, select

from core import audit
from core.config import PROJECT_ROOT
from core.db.models import ModelVersion, User
from core.hashing import file_sha256
from core.passwords import hash_password

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



def bootstrap_admin(rt) -> str | None:
    """On a database with no users, create the first admin.

    The password comes from MEDSHIELD_ADMIN_PASSWORD; without it a one-time password is generated,
    printed once to the console, and must be changed at first login. Returns the generated
    password (None when none was generated or a user already exists)."""
    with rt.session() as s:
        if s.exec(select(func.count()).select_from(User)).one() > 0:
            return None
        generated = None
        password = rt.settings.admin_password
        if not password:
            generated = password = secrets.token_urlsafe(12)
        s.add(User(
            username=rt.settings.admin_username.lower(), name="Administrator", role="admin",
            password_hash=hash_password(password, rt.settings.bcrypt_rounds), must_change_password=generated is not None,
        ))
    audit.record(rt.engine, "system", "system", "user.bootstrap_admin", "success",
                 object_type="user", object_id=rt.settings.admin_username.lower())
    if generated and not os.environ.get("MEDSHIELD_QUIET_BOOTSTRAP"):
        print(
            "\n" + "=" * 64 + "\nMedShield first start: created administrator "
            f"'{rt.settings.admin_username.lower()}' with one-time password:\n\n    {generated}\n\n"
            "It is shown only now and must be changed at first login.\n" + "=" * 64 + "\n",
            file=sys.stderr, flush=True,
        )
    return generated


def register_shipped(rt) -> list[ModelVersion]:
    """Register every shipped weights file not yet known (by checksum); the first version of a
    task is deployed. Called at start-up; idempotent."""
    out = []
    for task, (rel, metrics_rel, name) in SHIPPED.items():
        path = PROJECT_ROOT / rel
        if not path.exists():
            continue
        sha = file_sha256(path)
        with rt.session() as s:
            known = s.exec(select(ModelVersion).where(ModelVersion.task == task, ModelVersion.sha256 == sha)).first()
            if known:
                out.append(known)
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
            out.append(mv)
        audit.record(rt.engine, "system", "system", "model.register", "success", object_type="model",
                     object_id=mv.id, detail=f"task={task} sha256={sha[:12]}")
    return out
