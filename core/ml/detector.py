"""Sensitive-text detector: a YOLO model trained by scripts/train_detector.py, loaded once per
process, run on a whole-image pass plus native-resolution tiles (so 18-px text in a 3000-px image
is still found), boxes merged across tiles, each line then checked by the text verifier
(core/ml/textverify.py). CPU by default, CUDA when present."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import PROJECT_ROOT
from core.geometry import Box
from core.errors import IntegrityError, NotFound
from core.hashing import file_sha256
from core.ml import yolo_env
from core.ml.synth import CLASSES

DEFAULT_WEIGHTS = PROJECT_ROOT / "models" / "detector" / "medshield-text-yolov8n.pt"
TILE = 416
OVERLAP = 128


@dataclass(frozen=True)
class Detection:
    box: Box
    cls: str
    confidence: float


def device() -> str:
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=4)
def load(path: str = str(DEFAULT_WEIGHTS), sha256: str | None = None):
    """The YOLO model, once per process (and per file). Verified by checksum when one is given."""
    p = Path(path)
    if not p.exists():
        raise NotFound(f"No detector weights at {p.name}: run scripts/train_detector.py.")
    if sha256 and file_sha256(p) != sha256:
        raise IntegrityError("The detector weights do not match their recorded checksum.")
    return yolo_env.import_yolo()(str(p), task="detect")


def _tiles(h: int, w: int, tile: int = TILE, overlap: int = OVERLAP) -> list[tuple[int, int]]:
    step = tile - overlap
    ys = list(range(0, max(1, h - tile) + 1, step)) or [0]
    xs = list(range(0, max(1, w - tile) + 1, step)) or [0]
    if ys[-1] + tile < h:
        ys.append(h - tile)
    if xs[-1] + tile < w:
        xs.append(w - tile)
    return [(y, x) for y in ys for x in xs]


MERGE_GAP = 1.2  # pieces of one row closer than this many line heights are one line (banner fields, tile cuts)


def _merge_lines(dets: list[Detection], gap: float = MERGE_GAP) -> list[Detection]:
    """Join pieces of one text line: same class, same row (vertical overlap > 60% of the lower
    piece, heights within 1.6x), horizontally touching or closer than `gap` line heights; and a
    box mostly inside another (the whole-image pass and a tile seeing the same text). Repeated
    until nothing joins, so the order of the input does not matter."""
    out = sorted(dets, key=lambda d: (d.cls, d.box.y0, d.box.x0))
    changed = True
    while changed:
        changed = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                p, d = out[i], out[j]
                a, b = p.box, d.box
                ha, hb = a.y1 - a.y0, b.y1 - b.y0
                h = min(ha, hb)
                if p.cls != d.cls or h <= 0:
                    continue
                ix, iy = min(a.x1, b.x1) - max(a.x0, b.x0), min(a.y1, b.y1) - max(a.y0, b.y0)
                if max(ha, hb) > 1.6 * h:
                    continue
                nested = ix > 0 and iy > 0 and ix * iy >= 0.6 * min(a.area, b.area)  # the same text seen twice
                if not nested and (iy <= 0.6 * h or -ix > gap * h):
                    continue
                out[i] = Detection(Box(min(a.x0, b.x0), min(a.y0, b.y0), max(a.x1, b.x1), max(a.y1, b.y1), a.frame),
                                   p.cls, max(p.confidence, d.confidence))
                del out[j]
                changed = True
                break
            if changed:
                break
    return out


MIN_WHOLE_PX = 12  # see detect(): smallest trusted line height of the whole-image pass, in model pixels
PAD = 0.12  # each box grows by this share of its height on every side (min 2 px): sealing errs on the side of cover
PAD_X = 0.35  # and by this much more at both ends of the line, where a missed first or last character would leak
MAX_LINE = 0.12  # a box taller than this share of the image (and than 48 px) is no line of text: dropped


def _grow(box: Box, h: int, w: int, pad: float, pad_x: float = PAD_X) -> Box:
    if pad <= 0:
        return box
    m = max(2, int(round(pad * (box.y1 - box.y0))))
    mx = m + int(round(pad_x * (box.y1 - box.y0)))
    return Box(box.x0 - mx, box.y0 - m, box.x1 + mx, box.y1 + m, box.frame).clip(h, w)


def seal_boxes(dets: list[Detection], h: int, w: int, pad: float = PAD) -> list[Detection]:
    """The boxes sealing covers: each detection grown by the margin, clipped to the image."""
    return [Detection(_grow(d.box, h, w, pad), d.cls, d.confidence) for d in dets]


COARSE_LINE = 1.6  # a coarse box at most this many times a tile box's height is on its line


def _use_coarse(boxes: list[np.ndarray], scores: list[np.ndarray], classes: list[np.ndarray],
                coarse: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Fold the whole-image pass's coarse boxes into the tiles' (in place): where tile boxes of the
    class touch one, the tiles read those lines and the coarse box only tells how far along they run
    (the ends of a box on its very line, overlapping it by half the taller one's height, are stretched
    to it); where tile boxes of any class touch it, it does not stand on its own (the tiles, at full
    resolution, read that text); where none does, it stands."""
    cx, cs, cc = coarse
    for k in range(len(cx)):
        x0, y0, x1, y1 = cx[k]
        touched = False
        for bx, cl_ in zip(boxes, classes):
            near = (bx[:, 0] < x1) & (bx[:, 2] > x0) & (bx[:, 1] < y1) & (bx[:, 3] > y0)
            touched |= bool(near.any())
            hit = near & (cl_ == cc[k])
            if hit.any():
                # stretch only a box on the same single line: a coarse box over a whole block of lines
                # would widen every short line of the block to the block's longest
                th = bx[:, 3] - bx[:, 1]
                iy = np.minimum(bx[:, 3], y1) - np.maximum(bx[:, 1], y0)
                line = hit & ((y1 - y0) <= COARSE_LINE * th) & (iy >= 0.5 * np.maximum(th, y1 - y0))
                bx[line, 0], bx[line, 2] = np.minimum(bx[line, 0], x0), np.maximum(bx[line, 2], x1)
        if not touched:
            boxes.append(cx[k:k + 1])
            scores.append(cs[k:k + 1])
            classes.append(cc[k:k + 1])


@dataclass
class Pass:
    """One model pass over the whole image or over one tile; boxes in image pixels."""
    xyxy: np.ndarray  # (n, 4) float
    conf: np.ndarray  # (n,)
    cls: np.ndarray  # (n,) int
    tile: tuple[int, int] | None = None  # the tile's (y, x); None for a whole-image pass


PHI, ANNOTATION = CLASSES.index("phi"), CLASSES.index("annotation")
ANNOTATION_SURE = 0.5  # an "annotation" box less confident than this is sealed as PHI (see combine)
UPSCALE_BELOW = int(TILE * 1.25)  # images this small get a second whole-image pass at twice the input size
EDGE_TOL = 3  # px: a tile box this close to a border the tile shares with a neighbour is a cut (or phantom) piece


def run_passes(model, image8: np.ndarray, conf: float = 0.25, iou: float = 0.45, tiles: bool = True) -> list[Pass]:
    """The model's raw boxes: a whole-image pass (plus one at twice the size for small images, whose
    smallest text the 416-px pass shrinks), and native-resolution tiles for large images (unless
    `tiles` is False: then one more whole-image pass at twice the size instead)."""
    img = image8 if image8.ndim == 3 else np.repeat(image8[..., None], 3, axis=2)
    img = np.ascontiguousarray(img[..., ::-1])  # ultralytics takes BGR numpy arrays
    h, w = img.shape[:2]
    dev = device()

    def as_pass(res, tile=None) -> Pass:
        b = res.boxes
        if b is None or len(b) == 0:
            return Pass(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), tile)
        xyxy = b.xyxy.cpu().numpy().astype(np.float64)
        if tile:
            xyxy[:, [0, 2]] += tile[1]
            xyxy[:, [1, 3]] += tile[0]
        return Pass(xyxy, b.conf.cpu().numpy(), b.cls.cpu().numpy().astype(int), tile)

    passes = [as_pass(model.predict([img], imgsz=TILE, conf=conf, iou=iou, device=dev, verbose=False)[0])]
    if max(h, w) <= UPSCALE_BELOW or not tiles:
        passes.append(as_pass(model.predict([img], imgsz=2 * TILE, conf=conf, iou=iou, device=dev, verbose=False)[0]))
        return passes
    tiles = _tiles(h, w)
    for start in range(0, len(tiles), 16):
        batch = tiles[start:start + 16]
        results = model.predict([img[y:y + TILE, x:x + TILE] for y, x in batch], imgsz=TILE, conf=conf, iou=iou,
                                device=dev, verbose=False)
        passes += [as_pass(res, t) for t, res in zip(batch, results)]
    return passes


def _at_inner_edge(xyxy: np.ndarray, tile: tuple[int, int], h: int, w: int, tol: int = EDGE_TOL) -> np.ndarray:
    """Boxes touching a border this tile shares with a neighbour (not the image's own border)."""
    y, x = tile
    out = np.zeros(len(xyxy), bool)
    if x > 0:
        out |= xyxy[:, 0] <= x + tol
    if x + TILE < w:
        out |= xyxy[:, 2] >= x + TILE - tol
    if y > 0:
        out |= xyxy[:, 1] <= y + tol
    if y + TILE < h:
        out |= xyxy[:, 3] >= y + TILE - tol
    return out


def _supported(box: np.ndarray, c: int, others: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    """Another pass saw text of class `c` over at least 30% of this box (or of its own box)."""
    area = max(1e-6, (box[2] - box[0]) * (box[3] - box[1]))
    for xyxy, cl in others:
        m = cl == c
        if not m.any():
            continue
        o = xyxy[m]
        ix = np.clip(np.minimum(o[:, 2], box[2]) - np.maximum(o[:, 0], box[0]), 0, None)
        iy = np.clip(np.minimum(o[:, 3], box[3]) - np.maximum(o[:, 1], box[1]), 0, None)
        small = np.minimum(area, (o[:, 2] - o[:, 0]) * (o[:, 3] - o[:, 1]))
        if (ix * iy >= 0.3 * np.maximum(small, 1e-6)).any():
            return True
    return False


def _spans_lines(xyxy: np.ndarray, tile_boxes: np.ndarray) -> np.ndarray:
    """Boxes holding the centres of tile boxes on two or more lines (centres further apart vertically
    than half a line): the shrunk whole-image view drew one box around a block of lines."""
    out = np.zeros(len(xyxy), bool)
    if not len(tile_boxes):
        return out
    cx, cy = (tile_boxes[:, 0] + tile_boxes[:, 2]) / 2, (tile_boxes[:, 1] + tile_boxes[:, 3]) / 2
    th = tile_boxes[:, 3] - tile_boxes[:, 1]
    for k, (x0, y0, x1, y1) in enumerate(xyxy):
        inside = (cx > x0) & (cx < x1) & (cy > y0) & (cy < y1)
        if inside.sum() >= 2:
            ys = cy[inside]
            out[k] = ys.max() - ys.min() > 0.5 * float(np.median(th[inside]))
    return out


CONTAINED = 0.3  # tolerance, in line heights, for a cut tile box to count as inside another pass's box


def _redundant(box: np.ndarray, c: int, others: list[tuple[np.ndarray, np.ndarray]], tol: float = CONTAINED) -> bool:
    """Another pass drew a larger box of this class (or PHI) around this one (give or take `tol` of its
    height on each side): a neighbour tile saw the whole line of which this is the strip its own border
    cut off, so this box adds nothing (and would stand as a second, sliver-shaped box of the line)."""
    area = max(1e-6, (box[2] - box[0]) * (box[3] - box[1]))
    t = tol * (box[3] - box[1])
    for xyxy, cl in others:
        o = xyxy[(cl == c) | (cl == PHI)]
        if not len(o):
            continue
        inside = (o[:, 0] <= box[0] + t) & (o[:, 2] >= box[2] - t) & (o[:, 1] <= box[1] + t) & (o[:, 3] >= box[3] - t)
        larger = (o[:, 2] - o[:, 0]) * (o[:, 3] - o[:, 1]) >= 1.2 * area
        if (inside & larger).any():
            return True
    return False


def combine(passes: list[Pass], h: int, w: int, conf: float = 0.25, iou: float = 0.45,
            frame: int = 0, annotation_sure: float | None = None) -> list[Detection]:
    """One box per text line from the passes: boxes under `conf` dropped; the whole-image pass's
    small boxes on tiled images only stretch tile boxes (_use_coarse); a tile box that touches a
    border shared with a neighbouring tile is kept only when another pass saw text there too (the
    neighbour overlaps it by 128 px, so a real cut line is seen whole or in part there, while a
    phantom at a tile's border is not), and is dropped when another pass drew the whole line around it
    (_redundant: the strip a tile border cut off); per-class NMS that grows the kept box over the
    same line's suppressed boxes; lines merged."""
    annotation_sure = ANNOTATION_SURE if annotation_sure is None else annotation_sure
    kept = [Pass(p.xyxy[p.conf >= conf], p.conf[p.conf >= conf], p.cls[p.conf >= conf], p.tile) for p in passes]
    tiled = any(p.tile is not None for p in kept)
    boxes, scores, classes = [], [], []
    coarse = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))
    # the whole-image pass saw a tiled image shrunk: lines it drew under MIN_WHOLE_PX tall are coarse
    # guesses, kept aside for _use_coarse (they stretch tile boxes, or stand where tiles saw nothing)
    small = [(q.xyxy[:, 3] - q.xyxy[:, 1]) * (TILE / max(h, w)) < MIN_WHOLE_PX if q.tile is None and tiled
             else np.zeros(len(q.xyxy), bool) for q in kept]
    if tiled:  # so are its boxes drawn around a block of lines the tiles read one by one
        tile_boxes = np.concatenate([np.zeros((0, 4))] + [q.xyxy for q in kept if q.tile is not None])
        small = [sm | _spans_lines(q.xyxy, tile_boxes) if q.tile is None else sm for q, sm in zip(kept, small)]
    # what can show that a cut tile box's line was seen whole elsewhere: every box but the coarse guesses
    precise = [(q.xyxy[~sm], q.cls[~sm]) for q, sm in zip(kept, small)]
    for n, p in enumerate(kept):
        xyxy, sc, cl = p.xyxy, p.conf, p.cls
        if p.tile is None and tiled:
            coarse = (xyxy[small[n]], sc[small[n]], cl[small[n]])
            xyxy, sc, cl = xyxy[~small[n]], sc[~small[n]], cl[~small[n]]
        elif p.tile is not None and len(xyxy):
            edge = _at_inner_edge(xyxy, p.tile, h, w)
            if edge.any():
                others = [(q.xyxy, q.cls) for m, q in enumerate(kept) if m != n]
                seen = [b for m, b in enumerate(precise) if m != n]
                ok = np.array([not e or (_supported(xyxy[k], int(cl[k]), others)
                                         and not _redundant(xyxy[k], int(cl[k]), seen)) for k, e in enumerate(edge)])
                xyxy, sc, cl = xyxy[ok], sc[ok], cl[ok]
        if len(xyxy):
            boxes.append(xyxy.copy())
            scores.append(sc)
            classes.append(cl)
    _use_coarse(boxes, scores, classes, coarse)
    if not boxes:
        return []
    xyxy, sc, cl = np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes)
    # annotation text stays visible, so the model must be sure of it: a less confident "annotation" is
    # sealed as PHI (short tags such as "058Y" or "15313" look much like technique values)
    cl = np.where((cl == ANNOTATION) & (sc < annotation_sure), PHI, cl)
    dets = []
    for c in np.unique(cl):
        idx = np.where(cl == c)[0]
        for x0, y0, x1, y1, score in _nms_grow(xyxy[idx], sc[idx], iou):
            box = Box(int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1)), frame).clip(h, w)
            if box.y1 - box.y0 > max(48, MAX_LINE * h):
                continue  # tissue, a colour-flow box or a diagram: burned-in text comes in lines
            if not box.empty:
                dets.append(Detection(box, CLASSES[int(c)] if int(c) < len(CLASSES) else str(c), float(score)))
    return _merge_lines(dets)


def _nms_grow(xyxy: np.ndarray, sc: np.ndarray, iou: float) -> list[tuple[float, float, float, float, float]]:
    """NMS that loses no text: a kept box grows along its line over every box it suppresses there
    (same line: heights within 1.6x, overlapping by 60% of the lower one), so a tile's cut piece that
    wins over the longer line another pass saw still seals all of it."""
    import torch
    from torchvision.ops import box_iou, nms

    t = torch.from_numpy(xyxy).float()
    keep = nms(t, torch.from_numpy(sc).float(), iou).numpy()
    overlaps = box_iou(t[keep], t).numpy()
    out = []
    for row, k in enumerate(keep):
        x0, y0, x1, y1 = xyxy[k]
        hk = y1 - y0
        for j in np.where(overlaps[row] > iou)[0]:
            a0, b0, a1, b1 = xyxy[j]
            ix = min(x1, a1) - max(x0, a0)
            iy = min(y1, b1) - max(y0, b0)
            same_line = max(hk, b1 - b0) <= 1.6 * max(1e-6, min(hk, b1 - b0))
            if same_line and ix > 0 and iy >= 0.6 * min(hk, b1 - b0):  # the same text on the same line
                x0, x1 = min(x0, a0), max(x1, a1)
        out.append((x0, y0, x1, y1, sc[k]))
    return out


def detect(image8: np.ndarray, conf: float = 0.25, iou: float = 0.45, weights: str | None = None,
           frame: int = 0, model=None, pad: float = PAD, verifier="shipped") -> list[Detection]:
    """Boxes in image pixels for an 8-bit view (H x W or H x W x 3) of the image, grown by `pad`.
    Each line first gets the text verifier's second look (core/ml/textverify.py: phantoms dropped, PHI
    and annotation calls checked): "shipped" uses models/verifier/ (if there), a loaded verifier is used
    as it is, None leaves the detector's boxes alone."""
    model = model or load(weights or str(DEFAULT_WEIGHTS))
    h, w = image8.shape[:2]
    dets = combine(run_passes(model, image8, conf, iou), h, w, conf, iou, frame)
    if verifier is not None:
        from core.ml import textverify

        dets = textverify.apply(image8, dets, None if isinstance(verifier, str) else verifier)
    return seal_boxes(dets, h, w, pad)
