"""Seal and open image regions with AES-256-GCM.

Each region's raw pixels (original dtype and bit depth) are encrypted under the image's data key
with a fresh 96-bit random nonce. The additional authenticated data binds the image id, the
region index, the frame, the box, the dtype and the shape, so a sealed region cannot be moved,
swapped between images or re-typed: any change is refused.
"""

from __future__ import annotations

import os
import secrets
from typing import NamedTuple

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import IntegrityError
from core.geometry import Box

NONCE_BYTES = 12


class SealedRegion(NamedTuple):
    """Immutable (a named tuple: built once per region on the sealing path, where a frozen
    dataclass's constructor alone cost a tenth of the encryption). `_replace` makes a changed copy."""
    index: int
    box: Box
    dtype: str
    shape: tuple[int, ...]
    nonce: bytes
    ciphertext: bytes  # includes the 16-byte GCM tag


_AAD = b"medshield/region/v1|image=%d|region=%d|frame=%d|box=%d,%d,%d,%d|dtype=%s|shape=%s"
# The same layout with the per-image fields first, for seal_regions' per-image template.
_AAD_HEAD = b"medshield/region/v1|image=%d|region=%%d|frame=%%d|box=%%d,%%d,%%d,%%d|dtype=%s|shape="


def _shape_bytes(shape: tuple[int, ...]) -> bytes:
    return b"%dx%d" % shape if len(shape) == 2 else b"x".join([b"%d" % v for v in shape])


def region_aad(image_id: int, index: int, box: Box, dtype: str, shape: tuple[int, ...]) -> bytes:
    """Every field that places or types the region; a fixed, unambiguous layout (bytes formatting:
    this runs once per region on the sealing path)."""
    return _AAD % (image_id, index, box.frame, box.x0, box.y0, box.x1, box.y1, dtype.encode(),
                   _shape_bytes(shape))


def cipher(dek: bytes | AESGCM) -> AESGCM:
    """An AES-256-GCM context; build it once per image and pass it to seal/open many regions."""
    return dek if isinstance(dek, AESGCM) else AESGCM(dek)


def _frame(pixels: np.ndarray, frames: int, frame: int) -> np.ndarray:
    return pixels[frame] if frames > 1 else pixels


def seal_regions(dek: bytes | AESGCM, image_id: int, pixels: np.ndarray, boxes: list[Box],
                 frames: int = 1, start: int = 0) -> list[SealedRegion]:
    """Seal every region of one image (region `start + i` is boxes[i]) with one cipher context.
    Each region's raw pixels (dtype and byte order kept, e.g. '<u2') are copied out once and
    encrypted under its own fresh 96-bit random nonce (one draw from the OS for all regions, cut
    into 12-byte nonces: independent random values, as separate draws would be).

    This is the protect path's inner loop, so it is written for speed (bench/bench_protect.py):
    the AAD's image and dtype fields are formatted once per image into a template (the bytes are
    those of `region_aad`, which opening uses; a test pins them), and records are built as plain
    tuples of the SealedRegion type."""
    encrypt, out, new = cipher(dek).encrypt, [], tuple.__new__
    dtype = pixels.dtype.str
    flat = pixels.ndim - (1 if frames > 1 else 0) == 2  # a region's shape is (rows, cols)
    template = (_AAD_HEAD % (image_id, dtype.encode())) + (b"%dx%d" if flat else b"%s")
    nonces, k = os.urandom(NONCE_BYTES * len(boxes)), 0
    for index, box in enumerate(boxes, start):
        frame, x0, y0, x1, y1 = box.frame, box.x0, box.y0, box.x1, box.y1
        patch = (pixels[frame] if frames > 1 else pixels)[y0:y1, x0:x1]
        shape = patch.shape
        nonce = nonces[k:k + NONCE_BYTES]
        k += NONCE_BYTES
        aad = template % ((index, frame, x0, y0, x1, y1, *shape) if flat
                          else (index, frame, x0, y0, x1, y1, _shape_bytes(shape)))
        out.append(new(SealedRegion, (index, box, dtype, shape, nonce, encrypt(nonce, patch.tobytes(), aad))))
    return out


def seal_region(dek: bytes | AESGCM, image_id: int, index: int, pixels: np.ndarray, box: Box,
                frames: int = 1) -> SealedRegion:
    return seal_regions(dek, image_id, pixels, [box], frames, index)[0]


def open_region(dek: bytes | AESGCM, image_id: int, region: SealedRegion) -> np.ndarray:
    aad = region_aad(image_id, region.index, region.box, region.dtype, region.shape)
    if len(region.nonce) != NONCE_BYTES:
        raise IntegrityError(f"Region {region.index} cannot be opened: its nonce is damaged.")
    try:
        raw = cipher(dek).decrypt(region.nonce, region.ciphertext, aad)
    except InvalidTag:
        raise IntegrityError(
            f"Region {region.index} cannot be opened: wrong key, or its pixels, nonce, tag, box "
            "or type were changed.") from None
    dtype = np.dtype(region.dtype)
    expected = int(np.prod(region.shape)) * dtype.itemsize
    if len(raw) != expected:  # pragma: no cover - the tag already binds the shape
        raise IntegrityError(f"Region {region.index} has the wrong size after opening.")
    return np.frombuffer(raw, dtype=dtype).reshape(region.shape)


def paste_region(pixels: np.ndarray, region: SealedRegion, patch: np.ndarray, frames: int = 1) -> None:
    b = region.box
    plane = _frame(pixels, frames, b.frame)
    if plane[b.y0:b.y1, b.x0:b.x1].shape != patch.shape:
        raise IntegrityError(f"Region {region.index} does not fit the image it belongs to.")
    plane[b.y0:b.y1, b.x0:b.x1] = patch


def seal_bytes(dek: bytes, label: str, image_id: int, data: bytes) -> bytes:
    """Seal a blob (e.g. the original DICOM header) with the image's data key: nonce || ct."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    aad = f"medshield/{label}/v1|image={image_id}".encode()
    return nonce + AESGCM(dek).encrypt(nonce, data, aad)


def open_bytes(dek: bytes, label: str, image_id: int, sealed: bytes) -> bytes:
    aad = f"medshield/{label}/v1|image={image_id}".encode()
    try:
        return AESGCM(dek).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError):
        raise IntegrityError(f"The sealed {label} cannot be opened: wrong key or changed bytes.") from None
