import os

import numpy as np
import pytest

from core.crypto.metrics import (adjacent_correlation, byte_entropy, entropy_bits, npcr_critical, npcr_uaci,
                                 region_metrics, uaci_interval)
from core.crypto.sealing import Box
from core.services import ingest, protect
from core.services.protect import RegionSpec
from tests.fixtures import png_bytes


def test_published_critical_values():
    # Wu, Zhou & Agaian (2011), Table 2/3: 256x256 images, alpha = 0.05
    assert npcr_critical(256 * 256) == pytest.approx(99.5693, abs=1e-3)
    low, high = uaci_interval(256 * 256)
    assert low == pytest.approx(33.2824, abs=1e-3) and high == pytest.approx(33.6447, abs=1e-3)


def test_basic_measures():
    assert entropy_bits(np.zeros(100, np.uint8)) == 0.0
    assert entropy_bits(np.arange(256, dtype=np.uint8)) == pytest.approx(8.0)
    assert byte_entropy(os.urandom(1 << 16)) > 7.99
    ramp = np.tile(np.arange(64, dtype=np.uint8), (16, 1))
    assert adjacent_correlation(ramp) > 0.99
    assert npcr_uaci(b"\x00" * 10, b"\x00" * 10) == (0.0, 0.0)


def test_sealed_region_looks_random():
    patch = np.tile(np.arange(200, dtype=np.uint16), (60, 1)) * 7  # smooth, highly correlated
    m = region_metrics(0, patch, os.urandom(32), b"aad")
    assert m.entropy_after > 7.9 and abs(m.corr_after) < 0.05 and m.corr_before > 0.99
    # a test at alpha=0.05 fails ~5% of ideal ciphertexts by chance: check the ranges instead
    assert m.npcr > 99.0 and 32.0 < m.uaci < 35.0
    assert m.passes == (m.npcr >= m.npcr_critical and m.uaci_low <= m.uaci <= m.uaci_high)


def test_metrics_are_recorded_and_readable(rt, make_user, admin):
    tech, doc = make_user("technician"), make_user("doctor")
    image_id = ingest.ingest_files(tech, [("m.png", png_bytes(200, 220, seed=9))]).results[0].image_id
    protect.protect_image(tech, image_id, [RegionSpec(Box(10, 10, 120, 60)), RegionSpec(Box(0, 150, 80, 190))])
    for who in (doc, admin):
        (row,) = protect.protection_metrics(who)
        m = row.metrics
        assert len(m["regions"]) == 2 and all(r["npcr"] > 99.0 and r["entropy_after"] > 7.9 for r in m["regions"])
        assert 0 < m["fidelity"]["ssim"] < 1 and m["fidelity"]["psnr_db"] > 5
        assert set(m["timings_ms"]) >= {"decode", "seal", "metrics", "encode"}
