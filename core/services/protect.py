"""Protect (technician) and restore (doctor).

Protect: each region's raw pixels are sealed with AES-256-GCM under a fresh per-image data key
(wrapped by the master key); the protected image shows the regions masked and is stored
losslessly (PNG, or DICOM with uncompressed pixels and a de-identified header). The original
DICOM header is sealed with the same data key. The clear original is then deleted: it exists only
as the protected image plus sealed regions.

Restore is core/services/restore.py. Every protect is audited.
"""

from __future__ import annotations

import io
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pydicom
from PIL import Image as PILImage
from sqlmodel import select

from core import audit
from core.crypto.keys import new_data_key, wrap_data_key
from core.crypto.masking import MASK_WARNINGS, MASKS, apply_mask
from core.crypto.metrics import as_dict as metrics_as_dict
from core.crypto.metrics import image_fidelity, region_metrics
from core.crypto.sealing import Box, SealedRegion, cipher, region_aad, seal_bytes, seal_regions
from core.db.models import Image, Region, utcnow
from core.errors import Conflict, IntegrityError, InvalidImage, NotFound, ValidationError
from core.imaging.decode import decode_image, pixel_digest
from core.imaging.deid import DeidOptions, deidentify, header_only
from core.imaging.dicomio import dataset_bytes, set_pixels
from core.imaging.phitext import HeaderValues
from core.imaging.display import encode_png, thumbnail_png, to_display_uint8
from core.runtime import Runtime, get_runtime
from core.security import Actor, Permission, service

REGION_CLASSES = ("phi", "name", "id", "date", "other-phi", "annotation")


@dataclass(frozen=True)
class RegionSpec:
    box: Box
    cls: str = "phi"
    confidence: float = 1.0
    source: str = "manual"
    reason: str = "manual"  # header:<Keyword> | rule:<kind> | default | detector | manual (never the text)
    seen_by: str = ""  # which detectors saw it: "ocr", "yolo", "ocr,yolo"


@dataclass
class ProtectResult:
    image_id: int
    regions: int
    protected_format: str
    deid_method: str | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    warning: str | None = None


def _load(rt: Runtime, image_id: int) -> Image:
    with rt.session() as s:
        img = s.get(Image, image_id)
        if img is None:
            raise NotFound(f"No image with id {image_id}.")
        return img


def stored_image(image_id: int, rt: Runtime | None = None):
    """The stored image decoded (the protected pixels once protected). For services that have
    already checked the acting user's permission; never exposed to pages directly."""
    rt = rt or get_runtime()
    return decode_image(rt.store.get(_load(rt, image_id).blob_key), rt.settings.limits)


def _shape_str(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(v)) for v in shape)


def _verifier():
    """The deployed text verifier, checksum-verified (None when none is registered: the detector alone)."""
    from core.errors import NotFound
    from core.ml import textverify
    from core.services.models import deployed_weights

    try:
        path, sha = deployed_weights("text-verifier")
    except NotFound:
        return None
    return textverify.load(path, sha)


def header_values(data: bytes, source_format: str) -> HeaderValues | None:
    """The PHI values of a DICOM file's header, for matching the text burned into its pixels (held in
    memory only). None for PNG/JPEG or an unreadable header."""
    if source_format != "dicom":
        return None
    try:
        return HeaderValues.from_dataset(pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True))
    except Exception:  # the pixels were decoded already; a header we cannot walk only loses the matcher
        return None


def detector_regions(pixels: np.ndarray, frames: int, photometric: str, conf: float, iou: float,
                     keep_annotations: bool = True, header: HeaderValues | None = None,
                     include_visible: bool = False) -> list[RegionSpec]:
    """Burned-in text found on the first frame by both detectors (the project's YOLO and the pretrained
    OCR detector), read and decided (core/ml/phidetect.py), repeated on every frame (cine loops keep
    their banner in place). Positively technical annotation (L/R, technique) is left visible when
    `keep_annotations` (returned, as class "annotation", only with `include_visible`)."""
    from core.ml import detector, phidetect
    from core.services.models import deployed_weights

    path, sha = deployed_weights("detector")
    model = detector.load(path, sha)  # once per process; refused if the file changed
    window = _window(pixels, frames)
    view = to_display_uint8(pixels, photometric=photometric, frames=frames, window=window)
    found = phidetect.find(view, model=model, verifier=_verifier(), header=header, conf=conf, iou=iou,
                           policy=phidetect.Policy(keep_annotations=keep_annotations))
    specs = []
    for r in found:
        if r.cls == "annotation" and not include_visible:
            continue
        for f in range(frames):
            b = r.box
            specs.append(RegionSpec(Box(b.x0, b.y0, b.x1, b.y1, f), cls=r.cls, confidence=r.confidence,
                                    source="detector", reason=r.reason, seen_by=",".join(r.sources)))
    return specs


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0, min(a.y1, b.y1) - max(a.y0, b.y0))
    union = a.area + b.area - ix * iy
    return ix * iy / union if union else 0.0


def regions_for_boxes(boxes: list[Box], proposals: list[RegionSpec], match_iou: float = 0.7) -> list[RegionSpec]:
    """Boxes drawn or kept on the canvas, each with the proposal it came from (same frame, IoU >= 0.7):
    its class, confidence, reason and detectors carry over (source "edited" when the box moved); a
    box that matches none is manual."""
    out = []
    for b in boxes:
        best, score = None, match_iou
        for p in proposals:
            if p.box.frame == b.frame and (v := _iou(p.box, b)) >= score:
                best, score = p, v
        if best is None:
            out.append(RegionSpec(b))
        else:
            out.append(RegionSpec(b, best.cls, best.confidence, "detector" if best.box == b else "edited",
                                  best.reason, best.seen_by))
    return out


@service(Permission.IMAGE_PROTECT)
def detect_regions(actor: Actor, image_id: int, include_visible: bool = True) -> list[RegionSpec]:
    """The detectors' proposals for an image waiting to be protected (for review on the canvas): lines
    to seal, and (with `include_visible`) the technical annotation the policy leaves visible."""
    rt = get_runtime()
    img = _load(rt, image_id)
    data = rt.store.get(img.blob_key)
    dec = decode_image(data, rt.settings.limits)
    return detector_regions(dec.pixels, dec.frames, dec.photometric, rt.settings.detector_conf,
                            rt.settings.detector_iou, header=header_values(data, dec.source_format),
                            include_visible=include_visible)


@service(Permission.IMAGE_PROTECT)
def protect_image(actor: Actor, image_id: int, regions: list[RegionSpec], mask: str = "solid",
                  deid: DeidOptions | None = None, use_detector: bool = False,
                  keep_annotations: bool = True) -> ProtectResult:
    rt = get_runtime()
    if mask not in MASKS:
        raise ValidationError(f"Unknown mask {mask!r}; choose one of {', '.join(MASKS)}.")
    t0 = time.perf_counter()
    img = _load(rt, image_id)
    if img.status != "uploaded":
        raise Conflict(f"Image #{image_id} is already {img.status}.")
    original = rt.store.get(img.blob_key)
    decoded = decode_image(original, rt.settings.limits)
    pixels = np.array(decoded.pixels, copy=True)
    if img.pixel_sha256 and pixel_digest(pixels) != img.pixel_sha256:
        raise IntegrityError(f"Image #{image_id} no longer matches the checksum taken at upload.")
    digest = img.pixel_sha256 or pixel_digest(pixels)
    t_det0 = time.perf_counter()
    if use_detector:
        regions = list(regions) + detector_regions(pixels, decoded.frames, decoded.photometric,
                                                   rt.settings.detector_conf, rt.settings.detector_iou,
                                                   keep_annotations=keep_annotations,
                                                   header=header_values(original, decoded.source_format))
    t_detect = time.perf_counter() - t_det0
    boxes: list[tuple[RegionSpec, Box]] = []
    for spec in regions:
        if spec.cls not in REGION_CLASSES:
            raise ValidationError(f"Unknown region class {spec.cls!r}.")
        if not 0 <= spec.box.frame < decoded.frames:
            raise ValidationError(f"Region frame {spec.box.frame} is outside the image's {decoded.frames} frame(s).")
        b = spec.box.clip(decoded.rows, decoded.cols)
        if not b.empty:
            boxes.append((spec, b))
    t_decode = time.perf_counter()

    dek = new_data_key()
    aes = cipher(dek)
    sealed: list[tuple[RegionSpec, SealedRegion]] = list(zip(
        [spec for spec, _ in boxes], seal_regions(aes, image_id, pixels, [b for _, b in boxes], decoded.frames)))
    t_seal = time.perf_counter()
    region_figs = [region_metrics(sr.index, _patch(pixels, sr.box, decoded.frames), dek,
                                  region_aad(image_id, sr.index, sr.box, sr.dtype, sr.shape))
                   for _, sr in sealed]
    window = _window(pixels, decoded.frames)
    original_view = _small_view(pixels, decoded, window)
    masked = pixels  # masked in place: from here on the clear pixels live only in the regions
    for _, b in boxes:
        apply_mask(masked, b, mask, decoded.frames)
    fidelity = image_fidelity(original_view, _small_view(masked, decoded, window))
    t_metrics = time.perf_counter()

    header_sealed = None
    deid_method = None
    if decoded.source_format == "dicom":
        ds = pydicom.dcmread(io.BytesIO(original), force=True)
        header_sealed = seal_bytes(dek, "dicom-header", image_id, dataset_bytes(header_only(ds)))
        opts = deid or DeidOptions()
        # BurnedInAnnotation=NO only when text was found and sealed, or the detectors looked and found none
        deidentify(ds, rt.deid_key, opts, pixels_cleaned=bool(boxes) or use_detector)
        deid_method = opts.describe()
        set_pixels(ds, masked, decoded.photometric)
        protected_bytes, fmt = dataset_bytes(ds), "dicom"
    else:
        protected_bytes, fmt = encode_png(masked), "png"
    thumb = thumbnail_png(masked, photometric=decoded.photometric, frames=decoded.frames)
    t_encode = time.perf_counter()

    timings = {"decode": (t_decode - t0 - t_detect) * 1e3, "detect": t_detect * 1e3, "seal": (t_seal - t_decode) * 1e3,
               "metrics": (t_metrics - t_seal) * 1e3, "encode": (t_encode - t_metrics) * 1e3}
    prot_key, _ = rt.store.put(protected_bytes)
    thumb_key, _ = rt.store.put(thumb)
    old_blob, old_thumb = img.blob_key, img.thumb_key
    wrapped = wrap_data_key(rt.keyring.current, image_id, dek)
    with rt.session() as s:
        row = s.get(Image, image_id)
        if row is None or row.status != "uploaded":
            raise Conflict(f"Image #{image_id} changed while it was being protected.")
        for spec, sr in sealed:
            s.add(Region(image_id=image_id, index=sr.index, frame=sr.box.frame, x0=sr.box.x0,
                         y0=sr.box.y0, x1=sr.box.x1, y1=sr.box.y1, kind=spec.cls,
                         confidence=float(spec.confidence), source=spec.source, reason=spec.reason[:64],
                         seen_by=spec.seen_by[:32], dtype=sr.dtype,
                         shape=_shape_str(sr.shape), nonce=sr.nonce, ciphertext=sr.ciphertext,
                         sealed_at=utcnow()))
        row.blob_key, row.thumb_key, row.protected_format = prot_key, thumb_key, fmt
        row.dek_wrapped, row.dek_key_id = wrapped, rt.keyring.current.id
        row.header_sealed, row.pixel_sha256 = header_sealed, digest
        row.mask_mode, row.deid_method = mask, deid_method
        row.status, row.protected_by, row.protected_at = "protected", actor.user_id, utcnow()
        row.protect_metrics = {
            "regions": metrics_as_dict(region_figs), "fidelity": fidelity,
            "detections": {"count": len(sealed), "sources": sorted({sp.source for sp, _ in sealed}),
                           "reasons": dict(Counter(sp.reason.split(":")[0] for sp, _ in sealed)),
                           "mean_confidence": (sum(sp.confidence for sp, _ in sealed) / len(sealed)) if sealed else None},
            "timings_ms": timings, "mask": mask, "bytes_sealed": sum(len(sr.ciphertext) - 16 for _, sr in sealed),
        }
        s.add(row)
    # The clear original goes now; only the protected image and the sealed regions remain.
    for key in {old_blob, old_thumb} - {prot_key, thumb_key, None}:
        rt.store.delete(key)
    timings["store"] = (time.perf_counter() - t_encode) * 1e3
    audit.record(rt.engine, actor.username, actor.role, "image.protect", "success",
                 object_type="image", object_id=image_id,
                 detail=f"regions={len(sealed)} mask={mask} format={fmt}")
    return ProtectResult(image_id, len(sealed), fmt, deid_method, timings_ms=timings,
                         warning=MASK_WARNINGS.get(mask))


def _patch(pixels: np.ndarray, box: Box, frames: int) -> np.ndarray:
    plane = pixels[box.frame] if frames > 1 else pixels
    return np.ascontiguousarray(plane[box.y0:box.y1, box.x0:box.x1])


def _window(pixels: np.ndarray, frames: int) -> tuple[float, float] | None:
    """One display window from the original, used for both views so masking does not move it."""
    plane = pixels[0] if frames > 1 else pixels
    if plane.dtype == np.uint8 or (plane.ndim == 3 and plane.shape[2] == 3):
        return None
    lo, hi = (float(v) for v in np.percentile(plane, [0.5, 99.5]))
    return ((lo + hi) / 2, max(hi - lo, 1.0))


def _small_view(pixels: np.ndarray, decoded, window) -> np.ndarray:
    view = to_display_uint8(pixels, photometric=decoded.photometric, frames=decoded.frames, window=window)
    im = PILImage.fromarray(view)
    im.thumbnail((512, 512), PILImage.Resampling.BILINEAR)
    return np.asarray(im)


def _regions(rt: Runtime, image_id: int) -> list[SealedRegion]:
    with rt.session() as s:
        rows = s.exec(select(Region).where(Region.image_id == image_id).order_by(Region.index)).all()  # type: ignore[arg-type]
    out = []
    for r in rows:
        if r.nonce is None or r.ciphertext is None:
            continue
        shape = tuple(int(v) for v in r.shape.split("x")) if r.shape else ()
        out.append(SealedRegion(r.index, Box(r.x0, r.y0, r.x1, r.y1, r.frame), r.dtype, shape,
                                bytes(r.nonce), bytes(r.ciphertext)))
    return out


@dataclass(frozen=True)
class ImageMetricsRow:
    image_id: int
    modality: str
    source_format: str
    rows: int
    cols: int
    protected_at: object
    metrics: dict


@service(Permission.METRICS_READ)
def protection_metrics(actor: Actor, limit: int = 500) -> list[ImageMetricsRow]:
    """Per-image protection figures (no pixels, no PHI), newest first."""
    rt = get_runtime()
    with rt.session() as s:
        rows = s.exec(select(Image).where(Image.status == "protected").order_by(Image.id.desc())  # type: ignore[union-attr]
                      .limit(max(1, min(limit, 5000)))).all()
        return [ImageMetricsRow(i.id, i.modality, i.source_format, i.rows, i.cols, i.protected_at,  # type: ignore[arg-type]
                                i.protect_metrics or {}) for i in rows]


@dataclass
class StoredPixels:
    """The stored pixels (masked once protected) and what is needed to display them."""

    pixels: np.ndarray
    frames: int
    photometric: str
    rescale: tuple[float, float]
    sealed_boxes: list[Box]


@service(Permission.IMAGE_VIEW)
def protected_pixels(actor: Actor, image_id: int) -> StoredPixels:
    rt = get_runtime()
    img = _load(rt, image_id)
    dec = stored_image(image_id, rt)
    boxes = [r.box for r in _regions(rt, image_id)]
    audit.record(rt.engine, actor.username, actor.role, "image.view", "success",
                 object_type="image", object_id=image_id, detail=f"status={img.status}")
    return StoredPixels(dec.pixels, dec.frames, dec.photometric, dec.rescale, boxes)


@dataclass
class ProtectedFile:
    name: str
    data: bytes
    fmt: str  # "dicom" or "png"


@service(Permission.IMAGE_VIEW)
def protected_file(actor: Actor, image_id: int) -> ProtectedFile:
    """The stored protected file (masked pixels; DICOM with its de-identified header), for export or a
    push. Refused for an image that is not protected: the clear original never leaves this way."""
    rt = get_runtime()
    img = _load(rt, image_id)
    if img.status != "protected":
        audit.record(rt.engine, actor.username, actor.role, "image.export", "denied",
                     object_type="image", object_id=image_id, detail=f"status={img.status}")
        raise Conflict(f"Image #{image_id} is not protected: protect it before exporting it.")
    fmt = img.protected_format or "png"
    data = rt.store.get(img.blob_key)
    audit.record(rt.engine, actor.username, actor.role, "image.export", "success",
                 object_type="image", object_id=image_id, detail=f"format={fmt}")
    return ProtectedFile(f"image-{image_id}.{'dcm' if fmt == 'dicom' else 'png'}", data, fmt)


@dataclass
class Preview:
    """A dry run of protection on one file (or zip member): nothing stored."""

    name: str
    png: bytes | None
    regions: list[RegionSpec] = field(default_factory=list)
    visible: list[RegionSpec] = field(default_factory=list)  # technical lines left visible
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    rows: int = 0
    cols: int = 0
    frames: int = 1


@service(Permission.IMAGE_PROTECT)
def preview_file(actor: Actor, name: str, data: bytes, mask: str = "solid",
                 keep_annotations: bool = True) -> list[Preview]:
    """What protecting this file would seal, without storing anything: the same checks as an upload
    (size, type, pixel limits, zip safety), the same detectors and decision, the mask drawn on an 8-bit
    view (PNG). A refused file or member comes back with its error; nothing raises for bad input."""
    from core.services.ingest import expand_upload

    rt = get_runtime()
    if mask not in MASKS:
        raise ValidationError(f"Unknown mask {mask!r}; choose one of {', '.join(MASKS)}.")
    try:
        items = expand_upload(name, data, rt.settings.limits)
    except InvalidImage as exc:
        return [Preview(name, None, error=str(exc))]
    out = []
    for item in items:
        t0 = time.perf_counter()
        try:
            dec = decode_image(item.data, rt.settings.limits)
        except InvalidImage as exc:
            out.append(Preview(item.name, None, error=str(exc)))
            continue
        t1 = time.perf_counter()
        found = detector_regions(dec.pixels, dec.frames, dec.photometric, rt.settings.detector_conf,
                                 rt.settings.detector_iou, keep_annotations=keep_annotations,
                                 header=header_values(item.data, dec.source_format), include_visible=True)
        t2 = time.perf_counter()
        seal = [r for r in found if r.cls != "annotation"]
        window = _window(dec.pixels, dec.frames)
        view = np.array(to_display_uint8(dec.pixels, photometric=dec.photometric, frames=dec.frames, window=window))
        for r in seal:
            if r.box.frame == 0:
                apply_mask(view, r.box.clip(dec.rows, dec.cols), mask, 1)
        png = encode_png(view)
        out.append(Preview(item.name, png, seal, [r for r in found if r.cls == "annotation"],
                           {"decode": (t1 - t0) * 1e3, "detect": (t2 - t1) * 1e3,
                            "mask": (time.perf_counter() - t2) * 1e3}, None, dec.rows, dec.cols, dec.frames))
    audit.record(rt.engine, actor.username, actor.role, "image.preview", "success", object_type="image",
                 detail=f"files={len(out)} regions={sum(len(p.regions) for p in out)}")
    return out


@dataclass(frozen=True)
class RegionInfo:
    """A sealed region as the record keeps it: where, what, why, how sure (no pixels, no text)."""

    index: int
    box: Box
    kind: str
    confidence: float
    source: str
    reason: str
    seen_by: str


@service(Permission.IMAGE_VIEW)
def sealed_regions(actor: Actor, image_id: int) -> list[RegionInfo]:
    rt = get_runtime()
    _load(rt, image_id)
    with rt.session() as s:
        rows = s.exec(select(Region).where(Region.image_id == image_id).order_by(Region.index)).all()  # type: ignore[arg-type]
    return [RegionInfo(r.index, Box(r.x0, r.y0, r.x1, r.y1, r.frame), r.kind, r.confidence, r.source, r.reason or "",
                       r.seen_by or "") for r in rows]
