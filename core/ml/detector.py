"""Sensitive-text detector: a YOLO model trained by scripts/train_detector.py, loaded once per
process, run on a whole-image pass plus native-resolution tiles (so 18-px text in a 3000-px image
is still found), boxes merged across tiles. CPU by default, CUDA when present."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import PROJECT_ROOT
from core.crypto.sealing import Box
from core.errors import IntegrityError, NotFound
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


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def _use_coarse(boxes: list[np.ndarray], scores: list[np.ndarray], classes: list[np.ndarray],
                coarse: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Fold the whole-image pass's coarse boxes into the tiles' (in place): where tile boxes of the
    class touch one, the tiles read those lines and the coarse box only tells how far along they run
    (their ends are stretched to it); where none does, the coarse box stands on its own."""
    cx, cs, cc = coarse
    for k in range(len(cx)):
        x0, y0, x1, y1 = cx[k]
        touched = False
        for bx, cl_ in zip(boxes, classes):
            hit = (cl_ == cc[k]) & (bx[:, 0] < x1) & (bx[:, 2] > x0) & (bx[:, 1] < y1) & (bx[:, 3] > y0)
            if hit.any():
                bx[hit, 0], bx[hit, 2] = np.minimum(bx[hit, 0], x0), np.maximum(bx[hit, 2], x1)
                touched = True
        if not touched:
            boxes.append(cx[k:k + 1])
            scores.append(cs[k:k + 1])
            classes.append(cc[k:k + 1])


def detect(image8: np.ndarray, conf: float = 0.25, iou: float = 0.45, weights: str | None = None,
           frame: int = 0, model=None, pad: float = PAD) -> list[Detection]:
    """Boxes in image pixels for an 8-bit view (H x W or H x W x 3) of the image, grown by `pad`."""
    import torch
    from torchvision.ops import nms

    model = model or load(weights or str(DEFAULT_WEIGHTS))
    img = image8 if image8.ndim == 3 else np.repeat(image8[..., None], 3, axis=2)
    img = np.ascontiguousarray(img[..., ::-1])  # ultralytics takes BGR numpy arrays
    h, w = img.shape[:2]
    crops, offsets = [img], [(0, 0)]
    if max(h, w) > TILE * 1.25:
        for y, x in _tiles(h, w):
            crops.append(img[y:y + TILE, x:x + TILE])
            offsets.append((y, x))
    boxes, scores, classes = [], [], []
    coarse = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))
    dev = device()
    for start in range(0, len(crops), 16):
        results = model.predict(crops[start:start + 16], imgsz=TILE, conf=conf, iou=iou, device=dev, verbose=False)
        for n, ((oy, ox), res) in enumerate(zip(offsets[start:start + 16], results), start=start):
            b = res.boxes
            if b is None or len(b) == 0:
                continue
            xyxy = b.xyxy.cpu().numpy()
            if n == 0 and len(crops) > 1:
                # the whole-image pass saw the image shrunk: lines it drew under MIN_WHOLE_PX tall are coarse
                # guesses, kept aside for _use_coarse (they stretch tile boxes, or stand where tiles saw nothing)
                small = (xyxy[:, 3] - xyxy[:, 1]) * (TILE / max(h, w)) < MIN_WHOLE_PX
                coarse = (xyxy[small], b.conf.cpu().numpy()[small], b.cls.cpu().numpy().astype(int)[small])
                b, xyxy = b[~small], xyxy[~small]
                if len(b) == 0:
                    continue
            xyxy[:, [0, 2]] += ox
            xyxy[:, [1, 3]] += oy
            boxes.append(xyxy)
            scores.append(b.conf.cpu().numpy())
            classes.append(b.cls.cpu().numpy().astype(int))
    _use_coarse(boxes, scores, classes, coarse)
    if not boxes:
        return []
    xyxy, sc, cl = np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes)
    dets = []
    for c in np.unique(cl):
        idx = np.where(cl == c)[0]
        keep = nms(torch.from_numpy(xyxy[idx]).float(), torch.from_numpy(sc[idx]).float(), iou).numpy()
        for k in idx[keep]:
            x0, y0, x1, y1 = xyxy[k]
            box = Box(int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1)), frame).clip(h, w)
            if box.y1 - box.y0 > max(48, MAX_LINE * h):
                continue  # tissue, a colour-flow box or a diagram: burned-in text comes in lines
            if not box.empty:
                dets.append(Detection(box, CLASSES[int(c)] if int(c) < len(CLASSES) else str(c), float(sc[k])))
    return seal_boxes(_merge_lines(dets), h, w, pad)
