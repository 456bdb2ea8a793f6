"""Decode PNG, JPEG and DICOM into numpy arrays, refusing anything broken or oversized.

Sizes are checked from the header before any pixel is decoded, so a 100k x 100k header costs
nothing. All library errors become `InvalidImage` with a message a person can act on.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image as PILImage

from core.config import Limits
from core.errors import InvalidImage
from core.imaging.display import PaletteColor, palette_lut
from core.imaging.sniff import describe_unknown, sniff_format

PILImage.MAX_IMAGE_PIXELS = None  # our own limit (Limits.max_pixels) applies instead
# Pillow's own opener, kept before any library patches PIL.Image.open (ultralytics replaces it
# with one that imports, and may try to install, a HEIF plugin on unreadable files).
_pil_open = PILImage.open


@dataclass
class DecodedImage:
    pixels: np.ndarray  # (H, W), (H, W, C), or (F, H, W[, C]) for multi-frame DICOM
    source_format: str  # png, jpeg, dicom
    rows: int
    cols: int
    frames: int = 1
    channels: int = 1
    bit_depth: int = 8
    modality: str = "OT"
    photometric: str = ""
    # Header facts used to file the image under a patient. Never logged.
    patient_code: str | None = None
    patient_name: str | None = None
    patient_sex: str | None = None
    patient_age: int | None = None
    study_date: str | None = None
    rescale: tuple[float, float] = (1.0, 0.0)  # DICOM RescaleSlope, RescaleIntercept (to HU for CT)
    extra: dict = field(default_factory=dict)

    def first_frame(self) -> np.ndarray:
        return self.pixels[0] if self.frames > 1 else self.pixels


def pixel_digest(pixels: np.ndarray) -> str:
    """SHA-256 over dtype, shape and raw bytes: proves a restore is pixel-exact."""
    import hashlib

    arr = np.ascontiguousarray(pixels)
    h = hashlib.sha256(f"{arr.dtype.str}|{'x'.join(map(str, arr.shape))}|".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def _check_dims(rows: int, cols: int, frames: int, limits: Limits) -> None:
    if rows <= 0 or cols <= 0 or frames <= 0:
        raise InvalidImage(f"The image header gives an impossible size ({cols}x{rows}, {frames} frame(s)).")
    if rows * cols > limits.max_pixels:
        raise InvalidImage(
            f"The image is {cols}x{rows} pixels, above the limit of {limits.max_pixels:,} pixels "
            "per frame (a decompression-bomb guard).")
    if rows * cols * frames > limits.max_total_pixels:
        raise InvalidImage(
            f"The image has {frames} frames of {cols}x{rows}, above the limit of "
            f"{limits.max_total_pixels:,} pixels in total.")


_PIL_MODES = {
    "1": ("L", 1, 8), "L": ("L", 1, 8), "P": (None, None, 8), "LA": ("L", 1, 8),
    "RGB": ("RGB", 3, 8), "RGBA": ("RGB", 3, 8), "CMYK": ("RGB", 3, 8), "YCbCr": ("RGB", 3, 8),
    "I;16": ("I;16", 1, 16), "I;16B": ("I;16", 1, 16), "I;16L": ("I;16", 1, 16), "I": ("I", 1, 16),
}


def _decode_raster(data: bytes, fmt: str, limits: Limits) -> DecodedImage:
    expected = "PNG" if fmt == "png" else "JPEG"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            im = _pil_open(io.BytesIO(data), formats=[expected])
            cols, rows = im.size
            _check_dims(rows, cols, 1, limits)
            if getattr(im, "n_frames", 1) > 1:
                raise InvalidImage("Animated PNG files are not accepted: upload one still image.")
            im.load()
    except InvalidImage:
        raise
    except PILImage.DecompressionBombError as exc:
        raise InvalidImage("The image is too large to decode safely (decompression bomb).") from exc
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        kind = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        raise InvalidImage(f"The {expected} file is {kind} and cannot be decoded.") from exc
    mode = im.mode
    target, channels, depth = _PIL_MODES.get(mode, ("RGB", 3, 8))
    if mode == "P":
        im = im.convert("RGB")
        rgb = np.asarray(im)
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
            return DecodedImage(rgb[..., 0].copy(), fmt, rows, cols, channels=1, bit_depth=8)
        return DecodedImage(rgb, fmt, rows, cols, channels=3, bit_depth=8)
    if target is not None and target != mode and target not in ("I;16",):
        im = im.convert(target)
    arr = np.asarray(im)
    if mode in ("I;16", "I;16B", "I;16L"):
        arr = arr.astype(np.uint16)
    elif mode == "I":
        if arr.min() < 0 or arr.max() > 65535:
            raise InvalidImage("The PNG holds 32-bit values outside the 16-bit range we accept.")
        arr = arr.astype(np.uint16)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    return DecodedImage(arr, fmt, rows, cols, channels=channels, bit_depth=depth)


def _dicom_text(ds, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    return str(value).strip()[:128] or None


def _decode_dicom(data: bytes, limits: Limits) -> DecodedImage:
    import pydicom
    from pydicom.errors import InvalidDicomError

    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=not has_preamble)
            if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
                raise InvalidImage("The DICOM file has no pixel data (it may be a report or a "
                                   "structured document), so there is no image to store.")
            rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
            frames = int(ds.get("NumberOfFrames") or 1)
            samples = int(ds.get("SamplesPerPixel") or 1)
            _check_dims(rows, cols, frames, limits)
            bits_alloc = int(ds.get("BitsAllocated") or 0)
            if bits_alloc not in (1, 8, 16, 32, 64):
                raise InvalidImage(f"The DICOM header gives an unsupported BitsAllocated ({bits_alloc}).")
            tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
            if "PixelData" in ds and (tsyntax is None or not tsyntax.is_compressed):
                need = rows * cols * frames * samples * max(bits_alloc, 8) // 8
                if bits_alloc == 1:
                    need = (rows * cols * frames * samples + 7) // 8
                if len(ds.PixelData) < need:
                    raise InvalidImage(
                        "The DICOM pixel data is truncated: the header promises "
                        f"{need:,} bytes but the file holds {len(ds.PixelData):,}.")
            pixels = ds.pixel_array
    except InvalidImage:
        raise
    except InvalidDicomError as exc:
        raise InvalidImage("The file is not a readable DICOM file.") from exc
    except MemoryError as exc:
        raise InvalidImage("The DICOM image is too large to decode.") from exc
    except NotImplementedError as exc:
        raise InvalidImage("This DICOM compression (transfer syntax) cannot be decoded here.") from exc
    except Exception as exc:  # pydicom raises many types for broken files
        raise InvalidImage(
            f"The DICOM file is broken and cannot be decoded ({type(exc).__name__}).") from exc

    pixels = np.asarray(pixels)
    expected_ndim = (3 if frames > 1 else 2) + (1 if samples > 1 else 0)
    if pixels.ndim != expected_ndim:
        raise InvalidImage("The DICOM pixel data does not match the size its header gives.")
    if pixels.dtype == np.bool_:
        pixels = pixels.astype(np.uint8)
    bit_depth = int(ds.get("BitsStored") or bits_alloc or 8)
    age = None
    raw_age = _dicom_text(ds, "PatientAge")
    if raw_age and raw_age[:3].isdigit():
        age = int(raw_age[:3]) if raw_age.endswith("Y") or raw_age[3:] == "" else 0
    sex = _dicom_text(ds, "PatientSex")
    photometric = str(ds.get("PhotometricInterpretation") or "")
    if photometric.upper() == "PALETTE COLOR" and samples == 1 and (lut := palette_lut(ds)) is not None:
        photometric = PaletteColor(lut, photometric)
    return DecodedImage(
        pixels=pixels, source_format="dicom", rows=rows, cols=cols, frames=frames,
        channels=samples, bit_depth=bit_depth,
        modality=(_dicom_text(ds, "Modality") or "OT").upper()[:16],
        photometric=photometric,
        patient_code=_dicom_text(ds, "PatientID"),
        patient_name=(_dicom_text(ds, "PatientName") or "").replace("^", " ").strip() or None,
        patient_sex=sex[:1].upper() if sex else None,
        patient_age=age,
        study_date=(_dicom_text(ds, "StudyDate") or "")[:8] or None,
        rescale=(float(ds.get("RescaleSlope") or 1.0), float(ds.get("RescaleIntercept") or 0.0)),
        extra={"pixel_spacing": _pixel_spacing(ds)},
    )


def _pixel_spacing(ds) -> tuple[float, float] | None:
    """(row, column) spacing in mm from PixelSpacing (or ImagerPixelSpacing), when sane."""
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            v = ds.get(tag)
            if v is not None and len(v) == 2:
                r, c = float(v[0]), float(v[1])
                if 0 < r < 100 and 0 < c < 100:
                    return (r, c)
        except (TypeError, ValueError):
            continue
    return None


def decode_image(data: bytes, limits: Limits | None = None) -> DecodedImage:
    """Decode one image file (not a zip). Raises InvalidImage with a clear reason."""
    limits = limits or Limits()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidImage("Expected file contents as bytes.")
    data = bytes(data)
    if len(data) == 0:
        raise InvalidImage("The file is empty.")
    if len(data) > limits.max_file_bytes:
        raise InvalidImage(
            f"The file is {len(data) / 2**20:.1f} MB, above the {limits.max_file_bytes / 2**20:.0f} MB limit.")
    fmt = sniff_format(data)
    if fmt in ("png", "jpeg"):
        return _decode_raster(data, fmt, limits)
    if fmt == "dicom":
        return _decode_dicom(data, limits)
    if fmt == "zip":
        raise InvalidImage("This is a zip archive, not a single image.")
    raise InvalidImage(describe_unknown(data))
