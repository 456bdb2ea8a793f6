"""An independent OCR adversary: what can a reader still get out of an image after protection?

Tesseract 5 (Debian's `tesseract-ocr`, not the OCR the product uses) reads several views of the image:
as it is, with a border, upscaled 2x and 3x, and binarised (Otsu, both polarities), in two page
segmentation modes (sparse text, one block). A PHI token counts as readable when any view yields it
exactly (upper case, alphanumerics only, 3+ characters), or, for tokens of 6+ characters, with one
character wrong (an adversary would try close guesses too).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


def available() -> bool:
    return shutil.which("tesseract") is not None


def tokens(text: str, min_len: int = 3) -> set[str]:
    return {t for t in re.split(r"[^0-9A-Z]+", text.upper()) if len(t) >= min_len}


def _otsu(a: np.ndarray) -> np.ndarray:
    hist = np.bincount(a.ravel(), minlength=256).astype(np.float64)
    total = a.size
    sum_all = np.dot(np.arange(256), hist)
    w0 = s0 = 0.0
    best, thr = -1.0, 128
    for t in range(256):
        w0 += hist[t]
        if w0 == 0 or w0 == total:
            continue
        s0 += t * hist[t]
        m0, m1 = s0 / w0, (sum_all - s0) / (total - w0)
        v = w0 * (total - w0) * (m0 - m1) ** 2
        if v > best:
            best, thr = v, t
    return ((a > thr) * 255).astype(np.uint8)


def views(image8: np.ndarray, strong: bool = True) -> list[Image.Image]:
    grey = Image.fromarray(image8).convert("L")
    out = [ImageOps.expand(grey, 10, fill=0)]
    for f in ((2, 3) if strong else (2,)):
        up = grey.resize((grey.width * f, grey.height * f), Image.Resampling.BICUBIC)
        out.append(ImageOps.expand(up, 10 * f, fill=0))
        if strong:
            b = Image.fromarray(_otsu(np.asarray(up)))
            out += [ImageOps.expand(b, 10 * f, fill=0), ImageOps.expand(ImageOps.invert(b), 10 * f, fill=255)]
    return out


def read_tokens(image8: np.ndarray, strong: bool = True, timeout: float = 60.0) -> set[str]:
    """Every token tesseract reads in any view of the image."""
    found: set[str] = set()
    with tempfile.TemporaryDirectory() as d:
        for n, im in enumerate(views(image8, strong)):
            p = Path(d) / f"v{n}.png"
            im.save(p)
            for psm in (("11", "6") if strong else ("11",)):
                try:
                    r = subprocess.run(["tesseract", str(p), "stdout", "--psm", psm], capture_output=True,
                                       text=True, timeout=timeout)
                except subprocess.TimeoutExpired:
                    continue
                found |= tokens(r.stdout)
    return found


def _near(a: str, b: str) -> bool:
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b)) <= 1


def readable(phi_tokens: set[str], read: set[str]) -> set[str]:
    """The PHI tokens the adversary read (exactly, or one character off for long ones)."""
    out = set()
    for t in phi_tokens:
        if t in read or (len(t) >= 6 and any(_near(t, r) for r in read)):
            out.add(t)
    return out
