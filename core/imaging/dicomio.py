"""Writing DICOM data sets back out (uncompressed pixels, original or de-identified header)."""

from __future__ import annotations

import io

import numpy as np
import pydicom


def dataset_bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


def set_pixels(ds: pydicom.Dataset, pixels: np.ndarray, photometric: str) -> None:
    """Store `pixels` uncompressed (Explicit VR Little Endian), as decoded."""
    photo = photometric or "MONOCHROME2"
    if pixels.ndim >= 3 and pixels.shape[-1] == 3:
        photo = "RGB"  # pydicom decodes YBR to RGB
    # 8-bit arrays (1-bit data is decoded to uint8) are stored as 8 bits; wider ones keep BitsStored
    width = pixels.dtype.itemsize * 8
    bits_stored = 8 if width == 8 else min(int(ds.get("BitsStored") or width), width)
    for kw in ("FloatPixelData", "DoubleFloatPixelData"):
        if kw in ds:
            del ds[kw]
    ds.set_pixel_data(pixels, photo, bits_stored, generate_instance_uid=False)
