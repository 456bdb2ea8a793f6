"""Clinical AI on stored images: prediction with Monte Carlo dropout, triage, findings text,
CAM explanations with a quality score, and the doctors' review loop. Every result is stored with
the model version, the input checksum, the probabilities, the uncertainty, the triage and the
settings used; corrections become training labels."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
from sqlmodel import select

from core import audit
from core.db.models import AIResult, Image, Setting, utcnow
from core.errors import Conflict, NotFound, ValidationError
from core.imaging.decode import pixel_digest
from core.ml import cam as cams
from core.ml import classifier
from core.ml.classifier import TriageThresholds
from core.runtime import get_runtime
from core.security import Actor, Permission, service
from core.timeutil import as_utc

TRIAGE_ORDER = {"critical": 0, "urgent": 1, "routine": 2, "normal": 3, "": 4}
DECISIONS = ("approved", "rejected", "corrected")


@dataclass
class Analysis:
    result_id: int
    image_id: int
    model: str
    prediction: str
    probabilities: dict[str, float]
    uncertainty: float
    epistemic: float
    triage: str
    flagged: bool
    flag_reason: str
    findings: str
    view: np.ndarray = field(repr=False)  # the model's input, 0..1, for overlays


@dataclass
class Explanation:
    heat: np.ndarray = field(repr=False)
    method: str = "gradcam"
    layer: str = ""
    target: str = ""
    confidence_drop: float = 0.0
    keep_change: float = 0.0
    boxes: list = field(default_factory=list)  # ((x0, y0, x1, y1), share) in model-input pixels
    layers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ResultRow:
    id: int
    image_id: int
    task: str
    model: str
    prediction: str
    probabilities: dict
    uncertainty: float | None
    triage: str
    flagged: bool
    review_status: str
    corrected_label: str | None
    review_comment: str
    created_at: datetime
    reviewed_at: datetime | None


def thresholds() -> TriageThresholds:
    with get_runtime().session() as s:
        row = s.get(Setting, "triage")
        return TriageThresholds(**row.value) if row and row.value else TriageThresholds()


@service(Permission.SETTINGS_MANAGE)
def set_thresholds(actor: Actor, critical: float, urgent: float, routine: float, max_uncertainty: float,
                   margin: float = 0.05) -> TriageThresholds:
    if not (0 <= routine < urgent < critical <= 1):
        raise ValidationError("Thresholds must rise: routine < urgent < critical, all between 0 and 1.")
    if not (0 < max_uncertainty <= 1) or not (0 <= margin < 0.5):
        raise ValidationError("Uncertainty limit must be in (0, 1] bits and the margin in [0, 0.5).")
    t = TriageThresholds(critical, urgent, routine, max_uncertainty, margin)
    rt = get_runtime()
    with rt.session() as s:
        row = s.get(Setting, "triage") or Setting(key="triage")
        row.value, row.updated_by, row.updated_at = asdict(t), actor.user_id, utcnow()
        s.add(row)
    audit.record(rt.engine, actor.username, actor.role, "settings.triage", "success", detail=json.dumps(asdict(t)))
    return t


CLASSIFIER_BY_MODALITY = {"US": "classifier-us"}  # any other modality: the chest X-ray model
DEFAULT_CLASSIFIER = "classifier-cxr"


def _deployed_tasks(prefix: str) -> list[str]:
    from core.db.models import ModelVersion

    with get_runtime().session() as s:
        rows = s.exec(select(ModelVersion).where(ModelVersion.deployed == True)).all()  # noqa: E712
        return sorted({m.task for m in rows if m.task.startswith(prefix)})


@service(Permission.AI_EXPLAIN)
def classifier_tasks(actor: Actor) -> list[str]:
    """Classifier tasks that have a deployed version (the doctor's choices)."""
    return _deployed_tasks("classifier")


def task_for_image(image_id: int) -> str:
    """Automatic model choice: the DICOM Modality tag (or the modality given at upload) picks the
    classifier; a task without a deployed version falls back to the chest X-ray one, then to any."""
    with get_runtime().session() as s:
        img = s.get(Image, image_id)
        if img is None:
            raise NotFound(f"No image with id {image_id}.")
        modality = img.modality
    deployed = _deployed_tasks("classifier")
    for task in (CLASSIFIER_BY_MODALITY.get(modality, DEFAULT_CLASSIFIER), DEFAULT_CLASSIFIER, *deployed):
        if task in deployed:
            return task
    raise NotFound("No classifier is deployed.")


def _model(task: str):
    from core.services.models import deployed, deployed_weights

    info = deployed(task)
    path, sha = deployed_weights(task)
    model, classes, size, arch = classifier.load(path, sha)
    return info, model, classes, size


def _input(actor: Actor, image_id: int, restored: bool):
    from core.services.protect import stored_image
    from core.services.restore import restore_image

    if restored:
        r = restore_image(actor, image_id)  # doctors only; audited there
        return r.pixels, r.frames, r.photometric
    dec = stored_image(image_id)
    return dec.pixels, dec.frames, dec.photometric


def _ensemble_members(task: str, classes: tuple[str, ...], deployed_id: int, limit: int = 5):
    """Other versions of the task with the same classes whose files still match their checksums."""
    from core.db.models import ModelVersion
    from core.errors import IntegrityError
    from core.services.training_runs import _abs

    with get_runtime().session() as s:
        rows = s.exec(select(ModelVersion).where(ModelVersion.task == task, ModelVersion.id != deployed_id)
                      .order_by(ModelVersion.id.desc())).all()  # type: ignore[union-attr]
        s.expunge_all()
    out = []
    for mv in rows:
        try:
            m, c, size, _ = classifier.load(_abs(mv.path, mv.sha256), mv.sha256)
        except (NotFound, IntegrityError, RuntimeError, KeyError):
            continue
        if tuple(c) == tuple(classes):
            out.append((mv, m, size))
        if len(out) >= limit:
            break
    return out


@service(Permission.AI_EXPLAIN)
def analyze(actor: Actor, image_id: int, task: str | None = None, mc_passes: int = 10,
            restored: bool = False, ensemble: bool = False) -> Analysis:
    """Predict on the stored (protected) pixels, or the restored original; store the result.
    Without a task, the image's modality chooses the classifier. With `ensemble`, the other
    versions of the task (same classes) add their passes to the deployed one's."""
    from core.services.models import POSITIVE

    if not 0 <= mc_passes <= 100:
        raise ValidationError("Use between 0 and 100 Monte Carlo passes.")
    task = task or task_for_image(image_id)
    info, model, classes, size = _model(task)
    pixels, frames, photometric = _input(actor, image_id, restored)
    x = classifier.preprocess(pixels, photometric, frames, size=size)
    pred = classifier.predict(model, x, classes, mc_passes=mc_passes)
    members = _ensemble_members(task, tuple(classes), info.id) if ensemble else []
    if members:
        preds = [pred] + [classifier.predict(m, classifier.preprocess(pixels, photometric, frames, size=sz), classes,
                                             mc_passes=mc_passes) for _, m, sz in members]
        pred = classifier.pool(preds)
    positive = POSITIVE.get(task, classes[-1])
    level, flagged, reason = classifier.triage(pred.as_dict().get(positive, 0.0), pred.predictive_entropy, thresholds())
    text = classifier.findings_text(pred, positive, level, flagged, f"{info.name} {info.version}")
    rt = get_runtime()
    with rt.session() as s:
        row = AIResult(image_id=image_id, model_version_id=info.id, task=task, input_sha256=pixel_digest(pixels),
                       prediction=pred.label, probabilities=pred.as_dict(), uncertainty=pred.predictive_entropy,
                       triage=level, settings={"mc_passes": pred.passes, "restored": restored, "epistemic": pred.epistemic,
                                               "ensemble": [m.id for m, _, _ in members],
                                               "flagged": flagged, "flag_reason": reason, "findings": text})
        s.add(row)
        s.flush()
        rid = row.id
    audit.record(rt.engine, actor.username, actor.role, "ai.analyze", "success", object_type="image",
                 object_id=image_id, detail=f"result={rid} model={info.name}:{info.version} triage={level}")
    name = f"{info.name} {info.version}" + (f" + {len(members)} more version(s)" if members else "")
    return Analysis(rid, image_id, name, pred.label, pred.as_dict(), pred.predictive_entropy,
                    pred.epistemic, level, flagged, reason, text, x[0, 0].numpy())


@service(Permission.AI_EXPLAIN)
def explain(actor: Actor, image_id: int, task: str | None = None, method: str = "gradcam",
            layer: str | None = None, target: str | None = None, restored: bool = False) -> Explanation:
    if method not in cams.METHODS:
        raise ValidationError(f"Unknown CAM method {method!r}.")
    task = task or task_for_image(image_id)
    _, model, classes, size = _model(task)
    pixels, frames, photometric = _input(actor, image_id, restored)
    x = classifier.preprocess(pixels, photometric, frames, size=size).to(next(model.parameters()).device)
    target_idx = classes.index(target) if target in classes else None
    if target_idx is None:
        import torch

        with torch.no_grad():
            target_idx = int(model(x).argmax(1)[0])
    layers = cams.conv_layers(model)
    layer = layer if layer in layers else cams.default_target_layer(model, x)
    heat = cams.compute_cam(model, x, method, target_idx, layer, batch_size=64)
    q = cams.cam_quality(model, x, heat, target_idx)
    rt = get_runtime()
    audit.record(rt.engine, actor.username, actor.role, "ai.explain", "success", object_type="image",
                 object_id=image_id, detail=f"method={method} task={task}")
    return Explanation(heat, method, layer, classes[target_idx], q.confidence_drop, q.keep_change,
                       cams.attention_boxes(heat),
                       layers[:12] + ([layer] if layer not in layers[:12] else []))


@dataclass
class SegmentationView:
    model: str
    mask: np.ndarray = field(repr=False)  # bool, at the image's size
    view: np.ndarray = field(repr=False)  # the image as 8-bit grey, same size
    area_px: int = 0
    area_fraction: float = 0.0
    area_mm2: float | None = None


@service(Permission.AI_EXPLAIN)
def segment(actor: Actor, image_id: int, task: str = "segmenter-lung", restored: bool = False) -> SegmentationView:
    """The deployed segmenter's mask at the image's own size, with its area (mm² when the DICOM
    header gives the pixel spacing)."""
    from core.imaging.display import to_display_uint8
    from core.ml import segmenter
    from core.services.models import deployed, deployed_weights

    info = deployed(task)
    path, sha = deployed_weights(task)
    model, size, _ = segmenter.load(path, sha)
    from core.services.protect import stored_image

    rt = get_runtime()
    stored = stored_image(image_id, rt)  # the header's pixel spacing survives de-identification
    spacing = stored.extra.get("pixel_spacing")
    if restored:
        pixels, frames, photometric = _input(actor, image_id, True)
    else:
        pixels, frames, photometric = stored.pixels, stored.frames, stored.photometric
    view = to_display_uint8(pixels, photometric=photometric, frames=frames)
    if view.ndim == 3:
        view = view.mean(axis=2).astype(np.uint8)
    x = classifier.preprocess(pixels, photometric, frames, size=size)
    seg = segmenter.segment(model, x, view.shape[:2], pixel_spacing=spacing)
    audit.record(rt.engine, actor.username, actor.role, "ai.segment", "success", object_type="image",
                 object_id=image_id, detail=f"task={task} model={info.name}:{info.version}")
    return SegmentationView(f"{info.name} {info.version}", seg.mask, view, seg.area_px, seg.area_fraction, seg.area_mm2)


def _row(r: AIResult, names: dict[int, str]) -> ResultRow:
    return ResultRow(r.id, r.image_id, r.task, names.get(r.model_version_id or -1, ""), r.prediction,  # type: ignore[arg-type]
                     r.probabilities, r.uncertainty, r.triage, bool((r.settings or {}).get("flagged")),
                     r.review_status, r.corrected_label, r.review_comment, as_utc(r.created_at),  # type: ignore[arg-type]
                     as_utc(r.reviewed_at))


def _names(s) -> dict[int, str]:
    from core.db.models import ModelVersion

    return {m.id: f"{m.name} {m.version}" for m in s.exec(select(ModelVersion)).all()}  # type: ignore[misc]


@service(Permission.AI_REVIEW)
def review_queue(actor: Actor, status: str = "pending", limit: int = 200) -> list[ResultRow]:
    """Pending results, flagged and most urgent first."""
    with get_runtime().session() as s:
        rows = s.exec(select(AIResult).where(AIResult.review_status == status).limit(max(1, min(limit, 2000)))).all()
        names = _names(s)
        out = [_row(r, names) for r in rows]
    return sorted(out, key=lambda r: (not r.flagged, TRIAGE_ORDER.get(r.triage, 9), r.id))


@service(Permission.AI_REVIEW)
def review(actor: Actor, result_id: int, decision: str, corrected_label: str | None = None,
           comment: str = "") -> ResultRow:
    if decision not in DECISIONS:
        raise ValidationError(f"Decide one of {', '.join(DECISIONS)}.")
    if decision == "corrected" and not (corrected_label or "").strip():
        raise ValidationError("A correction needs the right label.")
    rt = get_runtime()
    with rt.session() as s:
        r = s.get(AIResult, result_id)
        if r is None:
            raise NotFound(f"No AI result with id {result_id}.")
        if r.review_status != "pending":
            raise Conflict(f"Result #{result_id} was already {r.review_status}.")
        r.review_status, r.reviewer_id, r.reviewed_at = decision, actor.user_id, utcnow()
        r.review_comment = (comment or "")[:2000]
        label = r.prediction if decision == "approved" else (corrected_label or "").strip()[:64] if decision == "corrected" else None
        r.corrected_label = label if decision == "corrected" else None
        s.add(r)
        if label:  # approved or corrected: the image carries the label for training
            img = s.get(Image, r.image_id)
            if img is not None:
                img.label = label
                s.add(img)
        row = _row(r, _names(s))
    audit.record(rt.engine, actor.username, actor.role, f"ai.review.{decision}", "success", object_type="ai_result",
                 object_id=result_id)
    return row


@service(Permission.AI_REVIEW)
def results(actor: Actor, image_id: int | None = None, patient_id: int | None = None) -> list[ResultRow]:
    """History per image or per patient, newest first."""
    with get_runtime().session() as s:
        stmt = select(AIResult)
        if image_id is not None:
            stmt = stmt.where(AIResult.image_id == image_id)
        if patient_id is not None:
            ids = [i.id for i in s.exec(select(Image).where(Image.patient_id == patient_id)).all()]
            stmt = stmt.where(AIResult.image_id.in_(ids))  # type: ignore[union-attr]
        rows = s.exec(stmt.order_by(AIResult.id.desc())).all()  # type: ignore[union-attr]
        names = _names(s)
        return [_row(r, names) for r in rows]


@service(Permission.AI_REVIEW)
def export(actor: Actor, fmt: str = "csv") -> str:
    rows = results.__wrapped__(actor)  # type: ignore[attr-defined]
    data = [{**asdict(r), "created_at": r.created_at.isoformat(),
             "reviewed_at": r.reviewed_at.isoformat() if r.reviewed_at else ""} for r in rows]
    audit.record(get_runtime().engine, actor.username, actor.role, "ai.export", "success", detail=f"rows={len(rows)} fmt={fmt}")
    if fmt == "json":
        return json.dumps(data, indent=2)
    if fmt != "csv":
        raise ValidationError("Export as csv or json.")
    buf = io.StringIO()
    if data:
        w = csv.DictWriter(buf, fieldnames=list(data[0]))
        w.writeheader()
        for d in data:
            w.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in d.items()})
    return buf.getvalue()
