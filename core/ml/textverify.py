"""A second look at each text line the detector found: a small CNN reads the line's own crop at
native resolution (the detector saw it inside a 416-px view, often shrunk) and says whether it is
patient text (`phi`), annotation text that identifies nobody (`annotation`), or no text at all
(`none`: a phantom in a colour-flow box, an edge of anatomy). Trained by
scripts/train_text_verifier.py on synthetic lines and on the detector's own boxes, shipped under
models/verifier/. Loaded once per process; CPU by default, CUDA when present.

Policy (`apply`): the verifier only ever takes a box away from PHI when it is very sure (the
thresholds below were chosen on a development set drawn with the training fonts, not on the held-out
set), and it can always move an `annotation` box to PHI: a wrong call there over-seals, it never leaks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.config import PROJECT_ROOT

LABELS = ("phi", "annotation", "none")
H_IN, W_IN = 24, 256  # input crop: a line scaled to 24 px high, up to 256 px long (longer lines squashed)
CONTEXT_Y, CONTEXT_X = 0.15, 0.3  # share of the line height added around the box on each side
DEFAULT_WEIGHTS = PROJECT_ROOT / "models" / "verifier" / "medshield-text-verifier.pt"


@dataclass(frozen=True)
class Policy:
    drop_none: float = 0.9  # a box whose P(none) reaches this is dropped
    phi_to_annotation: float = 0.9  # a PHI box whose P(annotation) reaches this stays visible as annotation
    annotation_to_phi: float = 0.5  # an annotation box whose P(phi) reaches this is sealed as PHI


def crop(image8: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """The line's crop, grey, text made bright (dark-on-light lines inverted), contrast stretched to
    about [-0.5, 0.5], scaled to H_IN high and padded (or squashed) to W_IN: float32 H_IN x W_IN."""
    import cv2

    h, w = image8.shape[:2]
    bh = max(1, y1 - y0)
    my, mx = int(round(CONTEXT_Y * bh)), int(round(CONTEXT_X * bh))
    a0, b0, a1, b1 = max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)
    if a1 <= a0 or b1 <= b0:
        return np.zeros((H_IN, W_IN), np.float32)
    c = image8[b0:b1, a0:a1]
    c = (c.max(axis=2) if c.ndim == 3 else c).astype(np.float32)
    lo, hi = np.percentile(c, [2, 98])
    c = (c - lo) / max(hi - lo, 4.0)
    if np.median(c) > 0.5:  # light background: dark text
        c = 1.0 - c
    c = np.clip(c, 0, 1) - 0.5
    cw = max(1, int(round(c.shape[1] * H_IN / c.shape[0])))
    c = cv2.resize(c, (min(cw, W_IN), H_IN), interpolation=cv2.INTER_AREA if c.shape[0] > H_IN else cv2.INTER_LINEAR)
    out = np.full((H_IN, W_IN), float(np.median(c)), np.float32)
    out[:, :c.shape[1]] = c
    return out


def build():
    import torch
    from torch import nn

    def block(i, o, pool):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)] + (
            [nn.MaxPool2d(pool)] if pool else [])

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*block(1, 24, 2), *block(24, 48, 2), *block(48, 96, (2, 1)),
                                          *block(96, 128, None))
            self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(256, len(LABELS)))

        def forward(self, x):
            f = self.features(x).mean(dim=2)  # pool over the line's height: (n, c, w)
            return self.head(torch.cat([f.mean(dim=2), f.amax(dim=2)], dim=1))

    return Net()


def device() -> str:
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=2)
def load(path: str = str(DEFAULT_WEIGHTS), sha256: str | None = None):
    """The verifier, once per process (and file); None when no weights are shipped (the detector then
    stands alone). Verified by checksum when one is given."""
    import torch

    from core.errors import IntegrityError
    from core.hashing import file_sha256

    p = Path(path)
    if not p.exists():
        return None
    if sha256 and file_sha256(p) != sha256:
        raise IntegrityError("The text verifier's weights do not match their recorded checksum.")
    model = build()
    model.load_state_dict(torch.load(p, map_location="cpu", weights_only=True))
    return model.to(device()).eval()


def probabilities(model, image8: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """(n, 3) probabilities of phi / annotation / none for each (x0, y0, x1, y1) box."""
    import torch

    if not boxes:
        return np.zeros((0, len(LABELS)), np.float32)
    x = torch.from_numpy(np.stack([crop(image8, *b) for b in boxes]))[:, None]
    with torch.inference_mode():
        return torch.softmax(model(x.to(next(model.parameters()).device)), dim=1).cpu().numpy()


def apply(image8: np.ndarray, dets: list, model=None, policy: Policy = Policy()) -> list:
    """The detections after the verifier's second look (see the module's policy). `dets` are
    core.ml.detector.Detection objects (unpadded model boxes)."""
    model = model if model is not None else load()
    if model is None or not dets:
        return dets
    p = probabilities(model, image8, [(d.box.x0, d.box.y0, d.box.x1, d.box.y1) for d in dets])
    out = []
    for d, (pp, pa, pn) in zip(dets, p):
        if d.cls not in ("phi", "annotation"):  # a project detector's own classes are not text lines
            out.append(d)
            continue
        if pn >= policy.drop_none:
            continue
        if d.cls == "phi" and pa >= policy.phi_to_annotation:
            d = replace(d, cls="annotation")
        elif d.cls == "annotation" and pp >= policy.annotation_to_phi:
            d = replace(d, cls="phi")
        out.append(d)
    return out
