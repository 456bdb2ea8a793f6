"""Turn stored pixels (any bit depth, MONOCHROME1/2, RGB, multi-frame) into 8-bit views."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image as PILImage


# (center, width) in modality units (HU for CT)
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "soft tissue": (40.0, 400.0), "lung": (-600.0, 1500.0), "bone": (480.0, 2500.0), "brain": (40.0, 80.0)}


def raw_window(preset: tuple[float, float], rescale: tuple[float, float]) -> tuple[float, float]:
    """A window in modality units (HU) expressed in stored pixel values (slope * raw + intercept)."""
    slope, intercept = rescale
    slope = slope or 1.0
    return (preset[0] - intercept) / slope, preset[1] / abs(slope)


class PaletteColor(str):
    """The photometric interpretation "PALETTE COLOR" together with its colour table. Stored pixels stay
    palette indices (restores are exact); every view is drawn through the table. It is a `str`, so it
    travels wherever a photometric string does (decoded images, stored and restored pixels)."""

    lut: np.ndarray  # (n, 3) uint8: index -> RGB

    def __new__(cls, lut: np.ndarray, value: str = "PALETTE COLOR"):
        obj = super().__new__(cls, value)
        obj.lut = np.ascontiguousarray(lut, dtype=np.uint8)
        return obj

    def __reduce__(self):
        return (PaletteColor, (self.lut, str(self)))


def palette_lut(ds) -> np.ndarray | None:
    """The 8-bit RGB table of a PALETTE COLOR data set (None when it has none or it cannot be read)."""
    try:
        from pydicom.pixels import apply_color_lut

        first = int(ds.RedPaletteColorLookupTableDescriptor[1])
        n = int(ds.RedPaletteColorLookupTableDescriptor[0]) or 65536
        idx = np.arange(first, first + min(n, 65536), dtype=np.uint16 if ds.BitsAllocated > 8 else np.uint8)
        rgb = np.asarray(apply_color_lut(idx, ds))
    except Exception:  # no usable table: the indices are shown as grey levels
        return None
    if rgb.ndim != 2 or rgb.shape[1] != 3:
        return None
    top = float(rgb.max()) or 1.0
    table = (rgb.astype(np.float32) * (255.0 / (65535.0 if top > 255 else 255.0))).clip(0, 255).astype(np.uint8)
    lut = np.zeros((max(first + len(table), 256), 3), np.uint8)
    lut[first:first + len(table)] = table
    if first > 0:
        lut[:first] = table[0]
    return lut


def to_display_uint8(pixels: np.ndarray, *, photometric: str = "", frames: int = 1,
                     window: tuple[float, float] | None = None, frame: int = 0) -> np.ndarray:
    """Window/level (center, width) if given, else a robust 0.5-99.5 percentile stretch. Palette
    images (a PaletteColor photometric) are drawn through their colour table."""
    arr = pixels[frame] if frames > 1 else pixels
    lut = getattr(photometric, "lut", None)
    if lut is not None and arr.ndim == 2 and arr.dtype.kind == "u":
        return lut[np.minimum(arr, len(lut) - 1)]
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[..., :3]
        if arr.dtype == np.uint8:
            return np.ascontiguousarray(arr)
        lo, hi = float(arr.min()), float(arr.max())
        return ((arr.astype(np.float32) - lo) / max(hi - lo, 1e-6) * 255).clip(0, 255).astype(np.uint8)
    a = arr.astype(np.float32)
    if window is not None:
        center, width = window
        lo, hi = center - width / 2.0, center + width / 2.0
    elif arr.dtype == np.uint8:
        lo, hi = 0.0, 255.0
    else:
        lo, hi = (float(v) for v in np.percentile(a, [0.5, 99.5]))
        if hi <= lo:
            lo, hi = float(a.min()), float(a.max())
    out = ((a - lo) / max(hi - lo, 1e-6) * 255.0).clip(0, 255).astype(np.uint8)
    if photometric.upper() == "MONOCHROME1":
        out = 255 - out
    return out


def thumbnail_png(pixels: np.ndarray, *, photometric: str = "", frames: int = 1, size: int = 256) -> bytes:
    view = to_display_uint8(pixels, photometric=photometric, frames=frames)
    im = PILImage.fromarray(view)
    im.thumbnail((size, size), PILImage.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)  # a 256-px preview: fast beats a few KB smaller
    return buf.getvalue()


def encode_png(arr: np.ndarray) -> bytes:
    """Lossless PNG of 8-bit (grey or RGB) or 16-bit grey pixels, exactly as given."""
    if not ((arr.dtype == np.uint16 and arr.ndim == 2) or arr.dtype == np.uint8):
        from core.errors import InvalidImage

        raise InvalidImage(f"Pixels of type {arr.dtype} with shape {arr.shape} cannot be stored as PNG.")
    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()
