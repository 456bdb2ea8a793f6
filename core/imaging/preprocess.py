"""MR (and general) preprocessing: plain functions over numpy arrays, each testable alone."""

from __future__ import annotations

import numpy as np


def n4_bias_correction(image: np.ndarray, shrink: int = 2, iterations: int = 50,
                       mask: np.ndarray | None = None) -> np.ndarray:
    """Remove a smooth multiplicative intensity bias (SimpleITK's N4). Returns float32."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.asarray(image, dtype=np.float32))
    m = sitk.OtsuThreshold(img, 0, 1, 200) if mask is None else sitk.GetImageFromArray(mask.astype(np.uint8))
    small = sitk.Shrink(img, [shrink] * img.GetDimension()) if shrink > 1 else img
    small_mask = sitk.Shrink(m, [shrink] * img.GetDimension()) if shrink > 1 else m
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations([iterations] * 4)
    corrector.Execute(small, small_mask)
    log_bias = corrector.GetLogBiasFieldAsImage(img)
    return sitk.GetArrayFromImage(img / sitk.Exp(log_bias)).astype(np.float32)


def normalize_intensity(image: np.ndarray, nonzero: bool = True) -> np.ndarray:
    """Zero mean, unit variance (over non-zero voxels by default; MONAI NormalizeIntensity)."""
    from monai.transforms import NormalizeIntensity

    return np.asarray(NormalizeIntensity(nonzero=nonzero)(np.asarray(image, dtype=np.float32)), dtype=np.float32)


def denoise(image: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Non-local means (scikit-image) with the noise level estimated from the image."""
    from skimage.restoration import denoise_nl_means, estimate_sigma

    a = np.asarray(image, dtype=np.float32)
    lo, hi = float(a.min()), float(a.max())
    scaled = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    sigma = float(np.mean(estimate_sigma(scaled)))
    out = denoise_nl_means(scaled, h=0.8 * strength * sigma, sigma=sigma, fast_mode=True, patch_size=5, patch_distance=6)
    return (out * (hi - lo) + lo).astype(np.float32)
