"""How a sealed region looks in the protected image."""

from __future__ import annotations

import secrets

import numpy as np

from core.crypto.sealing import Box

MASKS = ("solid", "pixelate", "blur", "noise")
MASK_WARNINGS = {
    "blur": "Blurred text can sometimes be read or reconstructed; prefer solid fill or noise.",
    "pixelate": "Large-font text can sometimes be guessed from coarse pixels; solid fill is safest.",
}


def _plane(pixels: np.ndarray, frames: int, frame: int) -> np.ndarray:
    return pixels[frame] if frames > 1 else pixels


def apply_mask(pixels: np.ndarray, box: Box, mode: str = "solid", frames: int = 1) -> None:
    """Overwrite the box in place. Nothing of the original survives in solid or noise mode."""
    if mode not in MASKS:
        raise ValueError(f"Unknown mask {mode!r}; choose one of {', '.join(MASKS)}.")
    plane = _plane(pixels, frames, box.frame)
    region = plane[box.y0:box.y1, box.x0:box.x1]
    if region.size == 0:
        return
    if mode == "solid":
        region[...] = 0
    elif mode == "noise":
        info = np.iinfo(region.dtype) if np.issubdtype(region.dtype, np.integer) else None
        rng = np.random.default_rng(secrets.randbits(64))
        if info is not None:
            region[...] = rng.integers(info.min, info.max, size=region.shape, endpoint=True).astype(region.dtype)
        else:
            region[...] = rng.random(region.shape).astype(region.dtype)
    elif mode == "pixelate":
        h, w = region.shape[:2]
        step = max(4, min(h, w) // 3 or 1)
        for y in range(0, h, step):
            for x in range(0, w, step):
                block = region[y:y + step, x:x + step]
                block[...] = block.mean(axis=(0, 1)).astype(region.dtype)
    else:  # blur: a strong box blur, repeated
        from scipy.ndimage import uniform_filter

        k = max(5, min(region.shape[:2]) // 2 * 2 + 1)
        size = (k, k) + ((1,) if region.ndim == 3 else ())
        out = region.astype(np.float32)
        for _ in range(3):
            out = uniform_filter(out, size=size, mode="nearest")
        region[...] = out.astype(region.dtype)
