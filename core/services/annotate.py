"""Annotation: shapes drawn on the canvas (rectangles, polygons, brush paths) stored in image
pixels, image-level labels, and their review. A doctor approves or rejects; approved labels
feed training."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import select

from core import audit
from core.db.models import AIResult, Annotation, Image, utcnow
from core.errors import NotFound, ValidationError
from core.runtime import get_runtime
from core.security import Actor, Permission, service

SHAPE_KINDS = ("rect", "polygon", "path")
STATUSES = ("pending", "modified", "approved", "rejected")


@dataclass
class ImageAnnotations:
    image_id: int
    shapes: list[dict] = field(default_factory=list)  # each {"kind", "label", geometry...}
    image_label: str | None = None
    use_for_training: bool = True
    status: str = "unlabelled"
    comment: str = ""


def _validate(shapes: list[dict], rows: int, cols: int) -> list[dict]:
    out = []
    for sh in shapes:
        kind = sh.get("kind")
        label = str(sh.get("label") or "").strip()[:64]
        if kind not in SHAPE_KINDS:
            raise ValidationError(f"Unknown shape kind {kind!r}.")
        if not label:
            raise ValidationError("Every shape needs a class.")
        if kind == "rect":
            x0, y0, x1, y1 = (int(v) for v in sh["box"])
            if not (0 <= x0 < x1 <= cols and 0 <= y0 < y1 <= rows):
                raise ValidationError("A rectangle lies outside the image.")
            out.append({"kind": kind, "label": label, "box": [x0, y0, x1, y1]})
        else:
            pts = [[int(x), int(y)] for x, y in sh["points"]]
            if len(pts) < (3 if kind == "polygon" else 1) or any(not (0 <= x <= cols and 0 <= y <= rows) for x, y in pts):
                raise ValidationError(f"A {kind} has too few points or points outside the image.")
            item = {"kind": kind, "label": label, "points": pts}
            if kind == "path":
                item["width"] = max(1, int(sh.get("width", 2)))
            out.append(item)
    return out


@service(Permission.ANNOTATE)
def save(actor: Actor, image_id: int, shapes: list[dict], image_label: str | None = None,
         use_for_training: bool = True) -> ImageAnnotations:
    """Replace the image's shapes and label with what the canvas holds now."""
    rt = get_runtime()
    with rt.session() as s:
        img = s.get(Image, image_id)
        if img is None:
            raise NotFound(f"No image with id {image_id}.")
        clean = _validate(shapes, img.rows, img.cols)
        old = s.exec(select(Annotation).where(Annotation.image_id == image_id)).all()
        status = "modified" if old else "pending"
        for a in old:
            s.delete(a)
        for sh in clean:
            geometry = {k: v for k, v in sh.items() if k not in ("kind", "label")}
            s.add(Annotation(image_id=image_id, author_id=actor.user_id, kind=sh["kind"], label=sh["label"],
                             geometry=geometry, status=status))
        label = (image_label or "").strip()[:64] or None
        s.add(Annotation(image_id=image_id, author_id=actor.user_id, kind="label", label=label or "",
                         geometry={"use_for_training": bool(use_for_training)}, status=status))
        img.label = label
        s.add(img)
    audit.record(rt.engine, actor.username, actor.role, "annotation.save", "success", object_type="image",
                 object_id=image_id, detail=f"shapes={len(clean)} status={status}")
    return get.__wrapped__(actor, image_id)  # type: ignore[attr-defined]


@service(Permission.ANNOTATE)
def get(actor: Actor, image_id: int) -> ImageAnnotations:
    with get_runtime().session() as s:
        rows = s.exec(select(Annotation).where(Annotation.image_id == image_id).order_by(Annotation.id)).all()  # type: ignore[arg-type]
    out = ImageAnnotations(image_id)
    for a in rows:
        if a.kind == "label":
            out.image_label = a.label or None
            out.use_for_training = bool(a.geometry.get("use_for_training", True))
            out.status, out.comment = a.status, a.geometry.get("comment", "")
        else:
            out.shapes.append({"kind": a.kind, "label": a.label, **a.geometry})
    return out


@service(Permission.ANNOTATION_REVIEW)
def review(actor: Actor, image_id: int, approve: bool, comment: str = "") -> ImageAnnotations:
    rt = get_runtime()
    status = "approved" if approve else "rejected"
    with rt.session() as s:
        rows = s.exec(select(Annotation).where(Annotation.image_id == image_id)).all()
        if not rows:
            raise NotFound("This image has no annotations to review.")
        for a in rows:
            a.status, a.updated_at = status, utcnow()
            if a.kind == "label":
                a.geometry = {**a.geometry, "comment": (comment or "")[:2000], "reviewer": actor.username}
            s.add(a)
    audit.record(rt.engine, actor.username, actor.role, f"annotation.{status}", "success", object_type="image",
                 object_id=image_id)
    return get.__wrapped__(actor, image_id)  # type: ignore[attr-defined]


@service(Permission.ANNOTATE)
def next_image(actor: Actor) -> int | None:
    """Active learning: the unlabelled image whose latest AI result is most uncertain; without
    results, the oldest unlabelled image."""
    with get_runtime().session() as s:
        labelled = {a.image_id for a in s.exec(select(Annotation)).all()}
        candidates = [i.id for i in s.exec(select(Image).order_by(Image.id)).all() if i.id not in labelled]
        if not candidates:
            return None
        best, best_u = None, -1.0
        for r in s.exec(select(AIResult).where(AIResult.image_id.in_(candidates))).all():  # type: ignore[union-attr]
            if r.uncertainty is not None and r.uncertainty > best_u:
                best, best_u = r.image_id, r.uncertainty
        return best if best is not None else candidates[0]


@service(Permission.ANNOTATE)
def prelabel(actor: Actor, image_id: int) -> list[dict]:
    """The deployed detector's boxes as editable shapes (AI pre-labels)."""
    from core.services.protect import detector_regions, stored_image

    rt = get_runtime()
    dec = stored_image(image_id, rt)
    specs = detector_regions(dec.pixels, 1 if dec.frames == 1 else dec.frames, dec.photometric,
                             rt.settings.detector_conf, rt.settings.detector_iou, keep_annotations=False)
    return [{"kind": "rect", "label": sp.cls, "box": [sp.box.x0, sp.box.y0, sp.box.x1, sp.box.y1]}
            for sp in specs if sp.box.frame == 0]
