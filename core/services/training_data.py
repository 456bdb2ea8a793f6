"""A project's training data: the images whose labels train (approved annotations, or a labelled
dataset's own label), their splits, as tensors for MONAI and as a YOLO data set for the detector."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlmodel import select

from core.db.models import Annotation, Image, Job, Project
from core.errors import NotFound
from core.runtime import get_runtime

JOB_KINDS = ("train", "evaluate")
ACTIVE = ("queued", "running", "cancelling")
STALE_SECONDS = 300  # a running job without a heartbeat for this long lost its worker


# ---------------------------------------------------------------- data of a project

@dataclass
class Example:
    image_id: int
    sha256: str
    split: str
    label: str | None = None  # classification
    shapes: list = field(default_factory=list)  # detection / segmentation, image pixels


def project_examples(project_id: int) -> tuple[Project, list[Example]]:
    """The project's images that carry usable, approved labels."""
    rt = get_runtime()
    with rt.session() as s:
        p = s.get(Project, project_id)
        if p is None:
            raise NotFound(f"No project with id {project_id}.")
        imgs = s.exec(select(Image).where(Image.project_id == project_id).order_by(Image.id)).all()
        anns: dict[int, list[Annotation]] = {}
        if imgs:
            for a in s.exec(select(Annotation).where(Annotation.image_id.in_([i.id for i in imgs]))).all():  # type: ignore[union-attr]
                anns.setdefault(a.image_id, []).append(a)
        s.expunge_all()
    classes = set(p.classes or [])
    out = []
    for img in imgs:
        rows = anns.get(img.id, [])
        label_row = next((a for a in rows if a.kind == "label"), None)
        split = img.split or "train"
        if rows:
            if label_row is None or label_row.status != "approved" or not label_row.geometry.get("use_for_training", True):
                continue
        if p.task_type == "classification":
            label = (label_row.label if label_row and label_row.label else None) or img.label
            if label in classes:
                out.append(Example(img.id, img.sha256, split, label=label))
        else:
            shapes = [{"kind": a.kind, "label": a.label, **a.geometry} for a in rows
                      if a.kind != "label" and a.status == "approved" and a.label in classes]
            if shapes or (rows and label_row is not None):  # an approved image with no shape is a negative
                out.append(Example(img.id, img.sha256, split, shapes=shapes))
    return p, out


def _decoded(image_id: int):
    from core.services.protect import stored_image

    return stored_image(image_id)


def _tensors(p: Project, examples: list[Example], size: int):
    """x (N x 1 x S x S) and y (class indices, or N x 1 x S x S masks) through the app's preprocessing."""
    import torch
    import torch.nn.functional as F

    from core.imaging.canvas import rasterize
    from core.ml.classifier import preprocess

    xs, ys = [], []
    classes = list(p.classes or [])
    for ex in examples:
        d = _decoded(ex.image_id)
        xs.append(preprocess(d.pixels, d.photometric, d.frames, size=size)[0])
        if p.task_type == "classification":
            ys.append(classes.index(ex.label))
        else:
            m = rasterize(ex.shapes, d.rows, d.cols) > 0 if ex.shapes else np.zeros((d.rows, d.cols), bool)
            ys.append(F.interpolate(torch.as_tensor(m, dtype=torch.float32)[None, None], size=(size, size), mode="nearest")[0])
    if not xs:
        return torch.zeros((0, 1, size, size)), (torch.zeros(0, dtype=torch.long) if p.task_type == "classification"
                                                 else torch.zeros((0, 1, size, size)))
    x = torch.stack(xs)
    y = torch.as_tensor(ys, dtype=torch.long) if p.task_type == "classification" else torch.stack(ys)
    return x, y


def _yolo_dir(root: Path, p: Project, split_examples: dict[str, list[Example]]) -> Path:
    """A YOLO data set (8-bit PNG views + labels) for ultralytics."""
    from PIL import Image as PILImage

    from core.imaging.display import to_display_uint8

    classes = list(p.classes or [])
    for split, exs in split_examples.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for ex in exs:
            d = _decoded(ex.image_id)
            view = to_display_uint8(d.pixels, photometric=d.photometric, frames=d.frames)
            PILImage.fromarray(view).save(root / "images" / split / f"{ex.image_id}.png")
            rows = []
            for sh in ex.shapes:
                if sh["kind"] == "rect":
                    x0, y0, x1, y1 = sh["box"]
                else:
                    xs, ys = [q[0] for q in sh["points"]], [q[1] for q in sh["points"]]
                    x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
                rows.append(f"{classes.index(sh['label'])} {(x0 + x1) / 2 / d.cols:.6f} {(y0 + y1) / 2 / d.rows:.6f} "
                            f"{(x1 - x0) / d.cols:.6f} {(y1 - y0) / d.rows:.6f}")
            (root / "labels" / split / f"{ex.image_id}.txt").write_text("\n".join(rows) + ("\n" if rows else ""))
    (root / "data.yaml").write_text(json.dumps({"path": str(root), "train": "images/train", "val": "images/val",
                                                "names": {i: n for i, n in enumerate(classes)}}))
    return root / "data.yaml"


def _task_type(model_task: str) -> str:
    if model_task == "text-verifier":  # the detector's second look: no project trains or evaluates it
        return "text verification"
    return "classification" if model_task.startswith("classifier") else (
        "segmentation" if model_task.startswith("segmenter") else "detection")


def _locked_job(rt, s, job_id: int) -> Job | None:
    stmt = select(Job).where(Job.id == job_id)
    if rt.engine.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return s.exec(stmt).first()
