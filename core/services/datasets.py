"""Labelled data: stratified split assignment and label export (CSV, JSON, YOLO, COCO, PNG
masks), and deploying or rolling back model versions."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections import Counter

import numpy as np
from sqlmodel import select

from core import audit
from core.db.models import Annotation, Image, ModelVersion
from core.errors import NotFound, ValidationError
from core.imaging.canvas import rasterize
from core.runtime import get_runtime
from core.security import Actor, Permission, service

EXPORT_FORMATS = ("csv", "json", "yolo", "coco", "masks")


@service(Permission.ANNOTATE)
def assign_splits(actor: Actor, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0,
                  only_unassigned: bool = True, project_id: int | None = None) -> dict[str, Counter]:
    """Stratified by label (images without a label, as in box projects, form one stratum), fixed
    seed; one project's images, or every labelled image. Returns class counts per split."""
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValidationError("Split fractions must be non-negative and add up to 1.")
    rt = get_runtime()
    rng = np.random.default_rng(seed)
    with rt.session() as s:
        q = select(Image).order_by(Image.id)
        q = q.where(Image.project_id == project_id) if project_id is not None else q.where(Image.label.is_not(None))  # type: ignore[union-attr]
        imgs = [i for i in s.exec(q).all() if not (only_unassigned and i.split)]
        by_label: dict[str, list[Image]] = {}
        for i in imgs:
            by_label.setdefault(i.label or "", []).append(i)
        for items in by_label.values():
            order = rng.permutation(len(items))
            n_train = int(round(fractions[0] * len(items)))
            n_val = int(round(fractions[1] * len(items)))
            for rank, k in enumerate(order):
                items[k].split = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
                s.add(items[k])
    counts = class_counts.__wrapped__(actor, project_id)  # type: ignore[attr-defined]
    audit.record(rt.engine, actor.username, actor.role, "dataset.split", "success", detail=f"images={len(imgs)} seed={seed}")
    return counts


@service(Permission.ANNOTATE)
def class_counts(actor: Actor, project_id: int | None = None) -> dict[str, Counter]:
    """Images per split and class; a box or mask project counts its shapes' classes."""
    with get_runtime().session() as s:
        q = select(Image)
        q = q.where(Image.project_id == project_id) if project_id is not None else q.where(Image.label.is_not(None))  # type: ignore[union-attr]
        imgs = s.exec(q).all()
        shapes: dict[int, set[str]] = {}
        if project_id is not None and imgs:
            for a in s.exec(select(Annotation).where(Annotation.image_id.in_([i.id for i in imgs]))).all():  # type: ignore[union-attr]
                if a.kind != "label":
                    shapes.setdefault(a.image_id, set()).add(a.label)
        out: dict[str, Counter] = {}
        for i in imgs:
            for c in ([i.label] if i.label else sorted(shapes.get(i.id, ())) or ["(none)"]):
                out.setdefault(i.split or "unassigned", Counter())[c] += 1
        return out


@service(Permission.ANNOTATE)
def export_labels(actor: Actor, fmt: str = "csv", approved_only: bool = False,
                  project_id: int | None = None) -> tuple[str, bytes]:
    """(file name, bytes), of one project or of every image. YOLO, COCO and masks come as a zip."""
    if fmt not in EXPORT_FORMATS:
        raise ValidationError(f"Export as one of {', '.join(EXPORT_FORMATS)}.")
    rt = get_runtime()
    with rt.session() as s:
        q = select(Image) if project_id is None else select(Image).where(Image.project_id == project_id)
        imgs = {i.id: i for i in s.exec(q).all()}
        anns = [a for a in s.exec(select(Annotation).order_by(Annotation.image_id, Annotation.id)).all()  # type: ignore[arg-type]
                if a.image_id in imgs]
    if approved_only:
        anns = [a for a in anns if a.status == "approved"]
    shapes: dict[int, list[dict]] = {}
    labels: dict[int, str] = {}
    for a in anns:
        if a.kind == "label":
            if a.label:
                labels[a.image_id] = a.label
        else:
            shapes.setdefault(a.image_id, []).append({"kind": a.kind, "label": a.label, **a.geometry})
    for i, img in imgs.items():  # labels imported with a dataset and never annotated since
        if img.label and i not in labels and not approved_only:
            labels[i] = img.label
    ids = sorted(set(shapes) | set(labels))
    classes = sorted({sh["label"] for v in shapes.values() for sh in v})
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["image_id", "split", "label", "shape", "class", "geometry"])
        for i in ids:
            split = imgs[i].split or "" if i in imgs else ""
            w.writerow([i, split, labels.get(i, ""), "", "", ""])
            for sh in shapes.get(i, []):
                w.writerow([i, split, labels.get(i, ""), sh["kind"], sh["label"],
                            json.dumps({k: v for k, v in sh.items() if k not in ("kind", "label")})])
        name, data = "labels.csv", buf.getvalue().encode()
    elif fmt == "json":
        data = json.dumps([{"image_id": i, "split": imgs[i].split if i in imgs else None, "label": labels.get(i),
                            "shapes": shapes.get(i, [])} for i in ids], indent=2).encode()
        name = "labels.json"
    else:
        zbuf = io.BytesIO()
        with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as zf:
            if fmt == "yolo":
                zf.writestr("classes.txt", "\n".join(classes) + "\n")
                for i in ids:
                    img = imgs[i]
                    rows = []
                    for sh in shapes.get(i, []):
                        x0, y0, x1, y1 = _bbox(sh)
                        rows.append(f"{classes.index(sh['label'])} {(x0 + x1) / 2 / img.cols:.6f} {(y0 + y1) / 2 / img.rows:.6f} "
                                    f"{(x1 - x0) / img.cols:.6f} {(y1 - y0) / img.rows:.6f}")
                    zf.writestr(f"labels/{img.split or 'unassigned'}/{i}.txt", "\n".join(rows) + ("\n" if rows else ""))
            elif fmt == "coco":
                coco = {"images": [{"id": i, "width": imgs[i].cols, "height": imgs[i].rows, "file_name": f"{i}.png"} for i in ids],
                        "categories": [{"id": n + 1, "name": c} for n, c in enumerate(classes)], "annotations": []}
                for i in ids:
                    for sh in shapes.get(i, []):
                        x0, y0, x1, y1 = _bbox(sh)
                        ann = {"id": len(coco["annotations"]) + 1, "image_id": i, "category_id": classes.index(sh["label"]) + 1,
                               "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0}
                        if sh["kind"] == "polygon":
                            ann["segmentation"] = [[float(v) for p in sh["points"] for v in p]]
                        coco["annotations"].append(ann)
                zf.writestr("annotations.json", json.dumps(coco))
            else:
                from PIL import Image as PILImage

                for i in ids:
                    for c in {sh["label"] for sh in shapes.get(i, [])}:
                        mask = rasterize([sh for sh in shapes[i] if sh["label"] == c], imgs[i].rows, imgs[i].cols)
                        b = io.BytesIO()
                        PILImage.fromarray(mask).save(b, "PNG")
                        zf.writestr(f"masks/{i}_{c}.png", b.getvalue())
        name, data = f"labels-{fmt}.zip", zbuf.getvalue()
    audit.record(rt.engine, actor.username, actor.role, "dataset.export", "success", detail=f"format={fmt} images={len(ids)}")
    return name, data


def _bbox(sh: dict) -> tuple[int, int, int, int]:
    if sh["kind"] == "rect":
        return tuple(sh["box"])  # type: ignore[return-value]
    xs, ys = [p[0] for p in sh["points"]], [p[1] for p in sh["points"]]
    pad = int(sh.get("width", 0)) // 2
    return min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad


@service(Permission.MODEL_DEPLOY)
def deploy(actor: Actor, version_id: int) -> None:
    """Make this version the one inference uses for its task (rollback = deploy an older one).
    Its file must still match its checksum."""
    from core.config import PROJECT_ROOT
    from core.hashing import file_sha256

    rt = get_runtime()
    with rt.session() as s:
        mv = s.get(ModelVersion, version_id)
        if mv is None:
            raise NotFound(f"No model version {version_id}.")
        path = mv.path if mv.path.startswith("/") else str(PROJECT_ROOT / mv.path)
        try:
            ok = file_sha256(path) == mv.sha256
        except FileNotFoundError:
            ok = False
        if not ok:
            from core.errors import IntegrityError

            raise IntegrityError(f"The file of {mv.name} {mv.version} is missing or does not match its checksum.")
        for other in s.exec(select(ModelVersion).where(ModelVersion.task == mv.task)).all():
            other.deployed = other.id == mv.id
            s.add(other)
        task, label = mv.task, f"{mv.name} {mv.version}"
    audit.record(rt.engine, actor.username, actor.role, "model.deploy", "success", object_type="model",
                 object_id=version_id, detail=f"task={task} {label}")
