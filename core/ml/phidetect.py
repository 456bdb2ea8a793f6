"""Burned-in PHI: two eyes, then read and decide.

1. **Find** text lines with both detectors: the project's own YOLO (core/ml/detector.py, with its
   text verifier) and PP-OCRv4's pretrained DBNet (core/ml/ocr.py), at a bounded working resolution.
2. **Fuse** their boxes: the union, pieces of one line joined (same row, touching or closer than a
   line height), a box seen by both kept once.
3. **Read** each line with the OCR recogniser at native resolution.
4. **Decide** (core/imaging/phitext.py): a header value of the same file, a PHI rule, or technical
   annotation; the default seals every line that is not positively technical. A line nobody can read
   is sealed when a detector is sure of it and dropped only when the OCR detector alone, unsure,
   proposed it (and the verifier calls it no text).

Each region says why it is sealed (`reason`: header:<Keyword>, rule:<kind>, default, detector) and
with what confidence; sealing boxes grow by the detector's margin.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from core.crypto.sealing import Box
from core.imaging.phitext import Decision, HeaderValues, classify
from core.ml import detector, ocr, textverify

LINE_GAP = 1.2  # pieces of a row closer than this many line heights are one line
UNREAD = 0.5  # a reading less confident than this is no reading
OCR_SURE = 0.6  # an unreadable box the OCR detector alone proposed stands only from this detector score


@dataclass(frozen=True)
class Policy:
    keep_annotations: bool = True  # positively technical lines stay visible (False: seal every line)
    yolo_tiles: bool = True  # the YOLO detector also reads native-resolution tiles of large images
    use_yolo: bool = True
    use_ocr: bool = True


@dataclass(frozen=True)
class TextRegion:
    box: Box  # the sealing box (grown by the margin), image pixels
    cls: str  # "phi" (sealed) or "annotation" (visible when the policy keeps annotations)
    confidence: float
    reason: str  # header:<Keyword> | rule:<kind> | default | detector
    sources: tuple[str, ...]  # which detectors saw it: "yolo", "ocr"
    line: Box | None = None  # the line's own box, before the margin


@dataclass
class _Cand:
    x0: float
    y0: float
    x1: float
    y1: float
    sources: set[str]
    yolo_cls: str | None = None
    yolo_conf: float = 0.0
    ocr_score: float = 0.0

    @property
    def h(self) -> float:
        return self.y1 - self.y0


@dataclass
class Timings:
    yolo_ms: float = 0.0
    ocr_detect_ms: float = 0.0
    read_ms: float = 0.0
    decide_ms: float = 0.0
    lines: int = 0
    extra: dict = field(default_factory=dict)


def _joinable(a: _Cand, b: _Cand, gap: float) -> bool:
    ha, hb = a.h, b.h
    h = min(ha, hb)
    if h <= 0 or max(ha, hb) > 1.6 * h:
        return False
    ix = min(a.x1, b.x1) - max(a.x0, b.x0)
    iy = min(a.y1, b.y1) - max(a.y0, b.y0)
    if ix > 0 and iy > 0 and ix * iy >= 0.6 * min((a.x1 - a.x0) * ha, (b.x1 - b.x0) * hb):
        return True  # the same text seen twice
    return iy > 0.6 * h and -ix <= gap * h


def fuse(yolo: list[detector.Detection], lines: list[ocr.Line], gap: float = LINE_GAP) -> list[_Cand]:
    """One candidate per text line from both detectors' boxes (unpadded), joined until nothing joins."""
    cands = [_Cand(d.box.x0, d.box.y0, d.box.x1, d.box.y1, {"yolo"}, d.cls, d.confidence) for d in yolo]
    cands += [_Cand(ln.x0, ln.y0, ln.x1, ln.y1, {"ocr"}, ocr_score=ln.score) for ln in lines]
    cands.sort(key=lambda c: (c.y0, c.x0))
    changed = True
    while changed:
        changed = False
        for i in range(len(cands)):
            for j in range(i + 1, len(cands)):
                a, b = cands[i], cands[j]
                if not _joinable(a, b, gap):
                    continue
                yc = a.yolo_cls if a.yolo_conf >= b.yolo_conf else b.yolo_cls
                cands[i] = _Cand(min(a.x0, b.x0), min(a.y0, b.y0), max(a.x1, b.x1), max(a.y1, b.y1),
                                 a.sources | b.sources, yc or a.yolo_cls or b.yolo_cls,
                                 max(a.yolo_conf, b.yolo_conf), max(a.ocr_score, b.ocr_score))
                del cands[j]
                changed = True
                break
            if changed:
                break
    return cands


def tighten(image8: np.ndarray, box: Box) -> Box:
    """The line's own extent inside a detector's box: the glyphs (connected pieces that stand out from a
    median-filtered background, so gradients and bars behind the text do not count) with an eighth of
    their height around them. Only ever shrinks; a box without clear glyphs stays as it is."""
    import cv2

    x0, y0, x1, y1 = box.x0, box.y0, box.x1, box.y1
    c = image8[y0:y1, x0:x1]
    H, W = c.shape[:2]
    if c.size == 0 or min(H, W) < 6:
        return box
    g = np.ascontiguousarray(c.max(axis=2) if c.ndim == 3 else c)
    k = min(255, max(3, (H // 2) * 2 + 1))
    diff = np.abs(g.astype(np.int16) - cv2.medianBlur(g, k).astype(np.int16))
    thr = max(10.0, 0.2 * float(np.percentile(diff, 99)))
    fg = (diff > thr).astype(np.uint8)
    n, _, st, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    keep = [i for i in range(1, n) if st[i, cv2.CC_STAT_HEIGHT] >= 0.25 * H and st[i, cv2.CC_STAT_AREA] >= 3
            and st[i, cv2.CC_STAT_WIDTH] <= 3 * H]
    if not keep:
        return box
    gx0 = min(st[i, cv2.CC_STAT_LEFT] for i in keep)
    gy0 = min(st[i, cv2.CC_STAT_TOP] for i in keep)
    gx1 = max(st[i, cv2.CC_STAT_LEFT] + st[i, cv2.CC_STAT_WIDTH] for i in keep)
    gy1 = max(st[i, cv2.CC_STAT_TOP] + st[i, cv2.CC_STAT_HEIGHT] for i in keep)
    if gx1 - gx0 < 0.3 * W or gy1 - gy0 < 0.3 * H:
        return box  # a few specks: no clear line here
    gh = gy1 - gy0
    pad = max(1, gh // 8)
    # vertically to the glyphs; along the line by at most a glyph height per end (the detectors' boxes run
    # a little past the text, and glyphs faint against bright bone at one end may not stand out here)
    return Box(x0 + max(0, min(gx0 - pad, gh)), y0 + max(0, gy0 - pad), x0 + min(W, max(gx1 + pad, W - gh)),
               y0 + min(H, gy1 + pad), box.frame)


def _decide(c: _Cand, text: str, score: float, header: HeaderValues | None, verifier_none: float) -> Decision | None:
    d = classify(text, score, header)
    if d.reason != "unreadable" and score >= UNREAD:
        return d
    if d.reason.startswith("header:"):
        return d  # a header value read even faintly
    # nothing could be read: seal what a detector is sure is text, drop an unsure OCR-only proposal
    if c.sources == {"ocr"} and (c.ocr_score < OCR_SURE or verifier_none >= 0.5):
        return None
    conf = max(c.yolo_conf, c.ocr_score)
    return Decision("phi", "detector", conf)


def find(image8: np.ndarray, *, model=None, verifier="shipped", engine=None, header: HeaderValues | None = None,
         conf: float = 0.25, iou: float = 0.45, frame: int = 0, policy: Policy = Policy(),
         timings: Timings | None = None, _trace: list | None = None) -> list[TextRegion]:
    """Text regions of an 8-bit view (H x W or H x W x 3 RGB). `model` / `verifier` as in
    detector.detect; `engine` the OCR engine (loaded once per process when None); `header` the
    same file's header values (DICOM)."""
    h, w = image8.shape[:2]
    t0 = time.perf_counter()
    yolo: list[detector.Detection] = []
    ver = None
    if policy.use_yolo:
        model = model or detector.load()
        passes = detector.run_passes(model, image8, conf, iou, tiles=policy.yolo_tiles)
        yolo = detector.combine(passes, h, w, conf, iou, frame)
        ver = textverify.load() if isinstance(verifier, str) else verifier
        if ver is not None:
            yolo = textverify.apply(image8, yolo, ver)
        yolo = [d for d in yolo if d.cls in ("phi", "annotation")]
    t1 = time.perf_counter()
    lines = ocr.detect_lines(image8, engine) if policy.use_ocr else []
    t2 = time.perf_counter()
    cands = [c for c in fuse(yolo, lines) if c.x1 - c.x0 >= 2 and c.y1 - c.y0 >= 2]
    boxes = [(int(np.floor(c.x0)), int(np.floor(c.y0)), int(np.ceil(c.x1)), int(np.ceil(c.y1))) for c in cands]
    readings = ocr.read(image8, boxes, engine) if cands else []
    t3 = time.perf_counter()
    # the verifier's view of boxes only the OCR detector proposed and nobody could read
    unread = [k for k, (c, r) in enumerate(zip(cands, readings)) if c.sources == {"ocr"} and r.score < UNREAD]
    p_none = np.zeros(len(cands))
    if unread and ver is not None:
        p_none[unread] = textverify.probabilities(ver, image8, [boxes[k] for k in unread])[:, 2]
    out = []
    for k, (c, r) in enumerate(zip(cands, readings)):
        d = _decide(c, r.text, r.score, header, float(p_none[k]))
        found = Box(*boxes[k], frame).clip(h, w)
        line = tighten(image8, found) if not found.empty else found
        if _trace is not None:  # development only (scripts): what was read and decided, never logged
            _trace.append(((line.x0, line.y0, line.x1, line.y1), c, r, d))
        if d is None or found.empty:
            continue
        # the seal covers the line grown by the margin and everything a detector drew around it
        g = detector.seal_boxes([detector.Detection(line, d.label, d.confidence)], h, w)[0].box
        grown = Box(min(g.x0, found.x0), min(g.y0, found.y0), max(g.x1, found.x1), max(g.y1, found.y1), frame)
        out.append(TextRegion(grown, d.label, float(d.confidence), d.reason, tuple(sorted(c.sources)), line))
    if timings is not None:
        timings.yolo_ms, timings.ocr_detect_ms = (t1 - t0) * 1e3, (t2 - t1) * 1e3
        timings.read_ms, timings.decide_ms = (t3 - t2) * 1e3, (time.perf_counter() - t3) * 1e3
        timings.lines = len(cands)
    if not policy.keep_annotations:
        out = [TextRegion(r.box, "phi", r.confidence, r.reason if r.cls == "phi" else "policy:seal-all", r.sources, r.line)
               for r in out]
    return out
