import numpy as np

from core.imaging.preprocess import denoise, n4_bias_correction, normalize_intensity


def _phantom(n=96):
    yy, xx = np.mgrid[:n, :n]
    disk = ((yy - n / 2) ** 2 + (xx - n / 2) ** 2 < (n / 3) ** 2).astype(np.float32) * 100 + 10
    return disk, yy, xx


def test_n4_removes_a_smooth_bias():
    img, yy, xx = _phantom()
    bias = 1.0 + 0.6 * (xx / xx.max())  # left-to-right shading
    biased = img * bias
    inside = img > 50
    before = np.std(biased[inside]) / np.mean(biased[inside])
    out = n4_bias_correction(biased, shrink=2, iterations=50)
    after = np.std(out[inside]) / np.mean(out[inside])
    assert out.shape == img.shape and after < 0.5 * before


def test_normalize_intensity():
    img, _, _ = _phantom()
    out = normalize_intensity(img, nonzero=False)
    assert abs(out.mean()) < 1e-4 and abs(out.std() - 1) < 1e-3


def test_denoise_lowers_noise_and_keeps_edges():
    img, _, _ = _phantom()
    noisy = img + np.random.default_rng(0).normal(0, 8, img.shape).astype(np.float32)
    out = denoise(noisy)
    assert np.abs(out - img).mean() < 0.6 * np.abs(noisy - img).mean()
    assert out[48, 48] > 80 and out[2, 2] < 30
