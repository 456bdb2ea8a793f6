"""Clinical-AI plumbing with small models built in the test (no shipped weights): shapes,
value ranges, MC-dropout variance, CAM methods and their quality score, triage rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.ml import cam, classifier
from core.ml.classifier import TriageThresholds, findings_text, predict, preprocess, triage


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return classifier.build("resnet18", num_classes=2, dropout=0.5)


@pytest.mark.parametrize("arch", classifier.ARCHS)
def test_architectures_build_and_run(arch):
    torch.manual_seed(0)
    model = classifier.build(arch, num_classes=3, dropout=0.3)
    out = model.eval()(torch.rand(2, 1, 64, 64))
    assert out.shape == (2, 3)


def test_preprocess_any_image():
    for arr, photo in [(np.random.randint(0, 255, (300, 200), np.uint8), ""),
                       (np.random.randint(-1024, 3000, (128, 128)).astype(np.int16), ""),
                       (np.random.randint(0, 4095, (3, 90, 90)).astype(np.uint16), "MONOCHROME1"),
                       (np.random.randint(0, 255, (50, 70, 3), np.uint8), "RGB")]:
        frames = 3 if arr.ndim == 3 and arr.shape[0] == 3 and photo == "MONOCHROME1" else 1
        x = preprocess(arr, photo, frames=frames, size=96)
        assert x.shape == (1, 1, 96, 96) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    hu = np.full((64, 64), -1000, np.int16)
    hu[20:40, 20:40] = 40
    x = preprocess(hu, window=(40, 400), size=64)  # soft-tissue window
    assert float(x[0, 0, 30, 30]) == pytest.approx(0.5, abs=0.02) and float(x[0, 0, 0, 0]) == 0.0


def test_mc_dropout_gives_spread_and_uncertainty(small):
    x = torch.rand(1, 1, 64, 64)
    single = predict(small, x, ("NORMAL", "PNEUMONIA"))
    assert single.passes == 1 and single.epistemic == 0.0 and abs(single.probabilities.sum() - 1) < 1e-5
    mc = predict(small, x, ("NORMAL", "PNEUMONIA"), mc_passes=12)
    assert mc.passes == 12 and mc.pass_probabilities.std(axis=0).max() > 0  # variance > 0
    assert 0.0 <= mc.epistemic <= mc.predictive_entropy <= 1.0 + 1e-6
    assert not any(m.training for m in small.modules())  # left in eval mode


@pytest.mark.parametrize("method", cam.METHODS)
def test_cam_methods(small, method):
    x = torch.rand(1, 1, 64, 64)
    heat = cam.compute_cam(small, x, method, target_class=1, batch_size=64)
    assert heat.shape == (64, 64) and heat.min() >= 0.0 and heat.max() <= 1.0
    q = cam.cam_quality(small, x, heat, 1)
    assert np.isfinite(q.confidence_drop) and np.isfinite(q.keep_change)


def test_target_layer_choice(small):
    layers = cam.conv_layers(small)
    assert cam.default_target_layer(small) == layers[0] and len(layers) > 5
    # with an input, the last layer whose map is at least 7 cells across: layer4 at 224 px, earlier at 64 px
    assert cam.default_target_layer(small, torch.rand(1, 1, 224, 224)) == layers[0]
    chosen = cam.default_target_layer(small, torch.rand(1, 1, 64, 64))
    assert chosen.startswith("layer2") and layers.index(chosen) == min(i for i, n in enumerate(layers) if n.startswith("layer2"))
    heat = cam.compute_cam(small, torch.rand(1, 1, 64, 64), "gradcam", layer=layers[3])
    assert heat.shape == (64, 64)


def test_attention_boxes():
    heat = np.zeros((50, 50), np.float32)
    heat[5:15, 5:20] = 1.0
    heat[30:35, 30:45] = 0.6
    boxes = cam.attention_boxes(heat, 0.5)
    assert boxes[0][0] == (5, 5, 20, 15) and boxes[0][1] > boxes[1][1] and abs(sum(b[1] for b in boxes) - 1) < 1e-6


def test_triage_rules():
    t = TriageThresholds()
    assert triage(0.97, 0.1, t) == ("critical", False, "")
    assert triage(0.75, 0.1, t)[0] == "urgent" and triage(0.5, 0.1, t)[0] == "routine" and triage(0.1, 0.1, t)[0] == "normal"
    level, flagged, why = triage(0.72, 0.1, t)
    assert flagged and "urgent" in why
    level, flagged, why = triage(0.2, 0.9, t)
    assert level == "normal" and flagged and "uncertain" in why


def test_findings_text(small):
    pred = predict(small, torch.rand(1, 1, 64, 64), ("NORMAL", "PNEUMONIA"), mc_passes=4)
    text = findings_text(pred, "PNEUMONIA", "routine", True, "densenet121 v1")
    assert "Triage priority: routine" in text and "review" in text and "4 Monte Carlo passes" in text


@pytest.mark.parametrize("variant", ["unet", "residual-unet", "attention-unet"])
def test_segmenter_variants(variant):
    from core.ml import segmenter

    torch.manual_seed(0)
    model = segmenter.build(variant, channels=(8, 16, 32))
    seg = segmenter.segment(model, torch.rand(1, 1, 64, 64), (120, 100), pixel_spacing=(0.5, 0.5))
    assert seg.mask.shape == (120, 100) and seg.mask.dtype == bool
    assert seg.area_px == int(seg.mask.sum()) and seg.area_mm2 == pytest.approx(seg.area_px * 0.25)


def test_ensemble_pools_passes_and_disagreement():
    from core.ml.classifier import Prediction, pool

    a = Prediction(("n", "p"), np.array([0.9, 0.1]), 1, 0.0, 0.0, np.array([[0.9, 0.1]]))
    b = Prediction(("n", "p"), np.array([0.1, 0.9]), 1, 0.0, 0.0, np.array([[0.1, 0.9]]))
    e = pool([a, b])
    assert e.passes == 2 and np.allclose(e.probabilities, [0.5, 0.5])
    assert e.epistemic > 0.5  # two confident members that disagree: the model is unsure
    with pytest.raises(ValueError):
        pool([a, Prediction(("x", "y"), np.array([1.0, 0.0]), 1, 0.0, 0.0, np.array([[1.0, 0.0]]))])
