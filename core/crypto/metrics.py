"""Security and fidelity figures for a protected image.

- entropy of each region before (pixel values) and after sealing (ciphertext bytes), bits/byte
- NPCR / UACI between two sealings of the same region under fresh nonces, with the critical
  values of Wu, Zhou & Agaian (2011) for the region's size at alpha = 0.05
- horizontal adjacent-pixel correlation before and after
- PSNR and SSIM (scikit-image) and perceptual-hash distance (imagehash) between the protected
  and the original image
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from scipy.stats import norm

ALPHA = 0.05
F = 255  # largest byte value


def entropy_bits(values: np.ndarray) -> float:
    v = np.asarray(values).ravel()
    if v.size == 0:
        return 0.0
    _, counts = np.unique(v, return_counts=True)
    p = counts / v.size
    return float(-(p * np.log2(p)).sum())


def byte_entropy(data: bytes) -> float:
    return entropy_bits(np.frombuffer(data, dtype=np.uint8))


def adjacent_correlation(img: np.ndarray) -> float:
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3:
        a = a.mean(axis=2)
    if a.shape[1] < 2:
        return 0.0
    x, y = a[:, :-1].ravel(), a[:, 1:].ravel()
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def npcr_uaci(c1: bytes, c2: bytes) -> tuple[float, float]:
    a = np.frombuffer(c1, dtype=np.uint8)
    b = np.frombuffer(c2, dtype=np.uint8)
    n = min(a.size, b.size)
    a, b = a[:n].astype(np.int16), b[:n].astype(np.int16)
    return float((a != b).mean() * 100), float((np.abs(a - b) / F).mean() * 100)


def npcr_critical(m: int, alpha: float = ALPHA) -> float:
    """NPCR below this (percent) fails the randomness test for M bytes."""
    return float((F - norm.ppf(1 - alpha) * math.sqrt(F / m)) / (F + 1) * 100)


def uaci_interval(m: int, alpha: float = ALPHA) -> tuple[float, float]:
    mu = (F + 2) / (3 * F + 3)
    var = (F + 2) * (F ** 2 + 2 * F + 3) / (18 * (F + 1) ** 2 * F * m)
    z = norm.ppf(1 - alpha / 2)
    return float((mu - z * math.sqrt(var)) * 100), float((mu + z * math.sqrt(var)) * 100)


@dataclass
class RegionMetrics:
    index: int
    nbytes: int
    entropy_before: float
    entropy_after: float
    npcr: float
    npcr_critical: float
    uaci: float
    uaci_low: float
    uaci_high: float
    corr_before: float
    corr_after: float

    @property
    def passes(self) -> bool:
        return self.npcr >= self.npcr_critical and self.uaci_low <= self.uaci <= self.uaci_high


def region_metrics(index: int, patch: np.ndarray, dek: bytes, aad: bytes) -> RegionMetrics:
    raw = np.ascontiguousarray(patch).tobytes()
    aes = AESGCM(dek)
    c1 = aes.encrypt(os.urandom(12), raw, aad)[:-16]
    c2 = aes.encrypt(os.urandom(12), raw, aad)[:-16]  # a fresh nonce: what a re-seal would give
    npcr, uaci = npcr_uaci(c1, c2)
    m = len(c1)
    low, high = uaci_interval(m)
    row_bytes = max(1, len(raw) // max(1, patch.shape[0]))
    cimg = np.frombuffer(c1[: (len(c1) // row_bytes) * row_bytes], dtype=np.uint8).reshape(-1, row_bytes)
    view = patch if patch.dtype == np.uint8 else patch.astype(np.float64)
    return RegionMetrics(index, m, entropy_bits(patch), byte_entropy(c1), npcr, npcr_critical(m), uaci,
                         low, high, adjacent_correlation(view), adjacent_correlation(cimg))


def image_fidelity(original8: np.ndarray, protected8: np.ndarray) -> dict[str, float]:
    """PSNR (dB), SSIM and perceptual-hash distance between 8-bit display views."""
    import imagehash
    from PIL import Image as PILImage
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    same = np.array_equal(original8, protected8)
    psnr = float("inf") if same else float(peak_signal_noise_ratio(original8, protected8, data_range=255))
    kw = {"channel_axis": 2} if original8.ndim == 3 else {}
    win = min(7, min(original8.shape[:2]) // 2 * 2 - 1) if min(original8.shape[:2]) < 7 else 7
    ssim = float(structural_similarity(original8, protected8, data_range=255, win_size=max(win, 3), **kw))
    dist = int(imagehash.phash(PILImage.fromarray(original8)) - imagehash.phash(PILImage.fromarray(protected8)))
    return {"psnr_db": psnr if math.isfinite(psnr) else 999.0, "ssim": ssim, "phash_distance": dist}


def as_dict(regions: list[RegionMetrics]) -> list[dict]:
    return [asdict(r) | {"passes": r.passes} for r in regions]
