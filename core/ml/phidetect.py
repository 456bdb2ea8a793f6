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

from core.geometry import Box
from core.imaging.phitext import Decision, HeaderValues, classify
from core.ml import detector, ocr, textverify

LINE_GAP = 1.2  # pieces of a row closer than this many line heights are one line
UNREAD = 0.5  # a reading less confident than this is no reading
OCR_SURE = 0.6  # an unreadable box the OCR detector alone proposed stands only from this detector score
VERIFIER_NONE = 0.9  # an unreadable line the text verifier calls "no text" this surely is dropped


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


def _glyphs(image8: np.ndarray, box: Box):
    """Glyph-sized pieces inside a box: connected components of what stands out from a median-filtered
    background (so gradients and bars behind the text do not count). Returns (stats rows, H, W)."""
    import cv2

    c = image8[box.y0:box.y1, box.x0:box.x1]
    H, W = c.shape[:2]
    if c.size == 0 or min(H, W) < 6:
        return [], H, W
    g = np.ascontiguousarray(c.max(axis=2) if c.ndim == 3 else c)
    k = min(255, max(3, (H // 2) * 2 + 1))
    diff = np.abs(g.astype(np.int16) - cv2.medianBlur(g, k).astype(np.int16))
    thr = max(10.0, 0.2 * float(np.percentile(diff, 99)))
    n, _, st, _ = cv2.connectedComponentsWithStats((diff > thr).astype(np.uint8), connectivity=8)
    return [st[i] for i in range(1, n) if st[i, cv2.CC_STAT_AREA] >= 3 and st[i, cv2.CC_STAT_HEIGHT] >= 4
            and st[i, cv2.CC_STAT_WIDTH] <= 3 * H and st[i, cv2.CC_STAT_HEIGHT] <= 0.95 * H + 2], H, W


def rows(image8: np.ndarray, box: Box) -> list[Box]:
    """The text lines inside a detector's box, each tight around its glyphs with an eighth of their height
    around them: a box a detector drew around a block of lines becomes one box per line. Only ever
    shrinks; vertically to the glyphs, along the line by at most a glyph height per end (detectors' boxes
    run a little past the text, and glyphs faint against bright bone at one end may not stand out here).
    A box without clear glyphs stays as it is."""
    import cv2

    st, H, W = _glyphs(image8, box)
    if not st:
        return [box]
    tall = max(s[cv2.CC_STAT_HEIGHT] for s in st)
    st = [s for s in st if s[cv2.CC_STAT_HEIGHT] >= 0.35 * tall]  # specks and dots are not what a line is made of
    prof = np.zeros(H + 1, np.int32)
    for s in st:
        prof[s[cv2.CC_STAT_TOP]] += 1
        prof[s[cv2.CC_STAT_TOP] + s[cv2.CC_STAT_HEIGHT]] -= 1
    covered = np.cumsum(prof)[:H] > 0
    bands, y = [], 0
    while y < H:
        if covered[y]:
            y1 = y
            while y1 < H and covered[y1]:
                y1 += 1
            bands.append((y, y1))
            y = y1
        y += 1
    bands = [b for b in bands if b[1] - b[0] >= 0.4 * max(b2[1] - b2[0] for b2 in bands)]
    out = []
    for b0, b1 in bands:
        mine = [s for s in st if s[cv2.CC_STAT_TOP] >= b0 - 1 and s[cv2.CC_STAT_TOP] + s[cv2.CC_STAT_HEIGHT] <= b1 + 1]
        gx0 = min(s[cv2.CC_STAT_LEFT] for s in mine)
        gx1 = max(s[cv2.CC_STAT_LEFT] + s[cv2.CC_STAT_WIDTH] for s in mine)
        gh = b1 - b0
        if len(bands) == 1 and (gx1 - gx0 < 0.3 * W or gh < 0.3 * H):
            return [box]  # a few specks: no clear line here
        pad = max(1, gh // 8)
        out.append(Box(box.x0 + max(0, min(gx0 - pad, gh)), box.y0 + max(0, b0 - pad),
                       box.x0 + min(W, max(gx1 + pad, W - gh)), box.y0 + min(H, b1 + pad), box.frame))
    return out or [box]


def tighten(image8: np.ndarray, box: Box) -> Box:
    """The one line a box holds, tight (see `rows`); the box itself when it holds several or none."""
    r = rows(image8, box)
    return r[0] if len(r) == 1 else box


EXTEND_GAP = 0.8  # a line's box reaches over glyphs beside it closer than this many line heights


def extend(view: np.ndarray, box: Box) -> Box:
    """The line's box grown along its row over the glyphs that continue it (on the contrast view, where
    faint characters over bright bone stand out): a detector that saw only the high-contrast half of
    a line leaves the other half unsealed otherwise."""
    import cv2

    H = box.y1 - box.y0
    h, w = view.shape[:2]
    if H < 5:
        return box
    X0, X1 = max(0, box.x0 - 8 * H), min(w, box.x1 + 8 * H)
    band = np.ascontiguousarray(view[box.y0:box.y1, X0:X1])
    if band.ndim == 3:
        band = band.max(axis=2)
    k = min(255, max(3, (H // 2) * 2 + 1))
    diff = np.abs(band.astype(np.int16) - cv2.medianBlur(band, k).astype(np.int16))
    inside = diff[:, box.x0 - X0:box.x1 - X0]
    thr = max(10.0, 0.3 * float(np.percentile(inside, 95))) if inside.size else 10.0
    n, _, st, _ = cv2.connectedComponentsWithStats((diff > thr).astype(np.uint8), connectivity=8)
    comps = sorted((int(st[i, 0]), int(st[i, 0] + st[i, 2])) for i in range(1, n)
                   if 0.35 * H <= st[i, 3] <= H and st[i, 2] <= 2.5 * H and st[i, 4] >= 3)
    lo, hi = box.x0 - X0, box.x1 - X0
    gap = EXTEND_GAP * H
    grew = True
    while grew:
        grew = False
        for a, b in comps:
            if b > hi and a <= hi + gap and a >= lo:
                hi, grew = b, True
            if a < lo and b >= lo - gap and b <= hi:
                lo, grew = a, True
    return Box(X0 + lo, box.y0, X0 + hi, box.y1, box.frame) if (lo, hi) != (box.x0 - X0, box.x1 - X0) else box


@dataclass
class _Line:
    """A line to read: its tight box, the detectors' box around it (for the seal), its candidate."""

    box: Box
    found: Box
    cand: _Cand


def _same_line(a: Box, b: Box) -> bool:
    ix = max(0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0, min(a.y1, b.y1) - max(a.y0, b.y0))
    ha, hb = a.y1 - a.y0, b.y1 - b.y0
    if ix * iy == 0 or max(ha, hb) > 1.6 * max(1, min(ha, hb)):
        return False
    inter = ix * iy
    return inter >= 0.5 * (a.area + b.area - inter) or inter >= 0.8 * min(a.area, b.area)


def _dedup(lines: list[_Line]) -> list[_Line]:
    """Lines that two candidates produced (the same text seen in two boxes) become one."""
    out: list[_Line] = []
    for ln in sorted(lines, key=lambda x: -x.box.area):
        for k, o in enumerate(out):
            if _same_line(o.box, ln.box):
                a, b, c, d = o.box, ln.box, o.cand, ln.cand
                merged = _Cand(min(c.x0, d.x0), min(c.y0, d.y0), max(c.x1, d.x1), max(c.y1, d.y1), c.sources | d.sources,
                               c.yolo_cls or d.yolo_cls, max(c.yolo_conf, d.yolo_conf), max(c.ocr_score, d.ocr_score))
                out[k] = _Line(Box(min(a.x0, b.x0), min(a.y0, b.y0), max(a.x1, b.x1), max(a.y1, b.y1), a.frame),
                               Box(min(o.found.x0, ln.found.x0), min(o.found.y0, ln.found.y0),
                                   max(o.found.x1, ln.found.x1), max(o.found.y1, ln.found.y1), a.frame), merged)
                break
        else:
            out.append(ln)
    return out


def _decide(c: _Cand, text: str, score: float, header: HeaderValues | None, verifier_none: float) -> Decision | None:
    d = classify(text, score, header)
    if d.reason != "unreadable" and score >= UNREAD:
        return d
    if d.reason.startswith("header:"):
        return d  # a header value read even faintly
    # nothing could be read: seal what a detector is sure is text, drop an unsure OCR-only proposal and
    # what the verifier is sure holds no text
    if c.sources == {"ocr"} and (c.ocr_score < OCR_SURE or verifier_none >= 0.5):
        return None
    if verifier_none >= VERIFIER_NONE:
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
    view = ocr.enhance(image8)
    lines = ocr.detect_lines(view, engine, contrast=False) if policy.use_ocr else []
    t2 = time.perf_counter()
    cands = [c for c in fuse(yolo, lines) if c.x1 - c.x0 >= 2 and c.y1 - c.y0 >= 2]
    todo: list[_Line] = []
    for c in cands:
        found = Box(int(np.floor(c.x0)), int(np.floor(c.y0)), int(np.ceil(c.x1)), int(np.ceil(c.y1)), frame).clip(h, w)
        if found.empty:
            continue
        for row in rows(image8, found):
            # the seal: what a detector drew around the line, within the line's own band
            todo.append(_Line(row, Box(found.x0, max(found.y0, row.y0), found.x1, min(found.y1, row.y1), frame), c))
    todo = _dedup([_Line(extend(view, ln.box), ln.found, ln.cand) for ln in _dedup(todo)])
    boxes = [(ln.box.x0, ln.box.y0, ln.box.x1, ln.box.y1) for ln in todo]
    readings = ocr.read(image8, boxes, engine) if todo else []
    t3 = time.perf_counter()
    # the verifier's view of the lines nobody could read
    unread = [k for k, r in enumerate(readings) if r.score < UNREAD]
    p_none = np.zeros(len(todo))
    if unread and ver is not None:
        p_none[unread] = textverify.probabilities(ver, image8, [boxes[k] for k in unread])[:, 2]
    out = []
    for k, (ln, r) in enumerate(zip(todo, readings)):
        d = _decide(ln.cand, r.text, r.score, header, float(p_none[k]))
        if _trace is not None:  # development only (scripts): what was read and decided, never logged
            _trace.append((boxes[k], ln.cand, r, d))
        if d is None:
            continue
        # the seal covers the line grown by the margin and what a detector drew around it
        g = detector.seal_boxes([detector.Detection(ln.box, d.label, d.confidence)], h, w)[0].box
        f = ln.found
        grown = Box(min(g.x0, f.x0), min(g.y0, f.y0), max(g.x1, f.x1), max(g.y1, f.y1), frame)
        out.append(TextRegion(grown, d.label, float(d.confidence), d.reason, tuple(sorted(ln.cand.sources)), ln.box))
    if timings is not None:
        timings.yolo_ms, timings.ocr_detect_ms = (t1 - t0) * 1e3, (t2 - t1) * 1e3
        timings.read_ms, timings.decide_ms = (t3 - t2) * 1e3, (time.perf_counter() - t3) * 1e3
        timings.lines = len(todo)
    if not policy.keep_annotations:
        out = [TextRegion(r.box, "phi", r.confidence, r.reason if r.cls == "phi" else "policy:seal-all", r.sources, r.line)
               for r in out]
    return out
