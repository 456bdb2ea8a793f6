"""The text-line verifier: its crops, its policy, and the shipped weights on drawn lines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from core.geometry import Box
from core.ml import detector, textverify
from core.ml.synth import HELDOUT_FONTS, font_paths


def _line(text: str, dark_on_light: bool = False, size=(900, 300), height: int = 22, xy=(40, 120)) -> tuple[np.ndarray, tuple]:
    rng = np.random.default_rng(5)
    bg = (rng.normal(200 if dark_on_light else 50, 6, size[::-1])).clip(0, 255).astype(np.uint8)
    im = Image.fromarray(bg)
    d = ImageDraw.Draw(im)
    font = ImageFont.truetype(str(font_paths(HELDOUT_FONTS)[0]), height)
    d.text(xy, text, font=font, fill=20 if dark_on_light else 235)
    return np.asarray(im), d.textbbox(xy, text, font=font)


def test_crop_makes_text_bright_and_fits_the_input():
    light, box = _line("SMITH^JOHN 1970-01-01")
    dark, box2 = _line("SMITH^JOHN 1970-01-01", dark_on_light=True)
    a, b = textverify.crop(light, *box), textverify.crop(dark, *box2)
    assert a.shape == b.shape == (textverify.H_IN, textverify.W_IN) and a.dtype == np.float32
    assert -0.5 <= a.min() and a.max() <= 0.5
    # either polarity comes out as bright strokes on a dark ground, so the two crops look alike
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.8
    assert np.median(a) < 0 and np.median(b) < 0


def test_crop_survives_odd_boxes():
    img = np.full((50, 60), 128, np.uint8)
    assert np.isfinite(textverify.crop(img, 0, 0, 60, 50)).all()  # flat: no division by zero
    assert not textverify.crop(img, 70, 70, 80, 80).any()  # outside the image
    long = textverify.crop(np.random.default_rng(1).integers(0, 255, (40, 3000), dtype=np.uint8), 0, 10, 3000, 30)
    assert long.shape == (textverify.H_IN, textverify.W_IN)  # a 150:1 banner is squashed, not cut


def _fixed(p: tuple[float, float, float]):
    """The real network with its head set to give probabilities `p` for any crop."""
    model = textverify.build().eval()
    with torch.no_grad():
        lin = model.head[1]
        lin.weight.zero_()
        lin.bias.copy_(torch.log(torch.tensor(p)))
    return model


def test_policy_only_takes_a_line_from_phi_when_very_sure():
    img, box = _line("PORTABLE")
    phi = detector.Detection(Box(*box, 0), "phi", 0.8)
    ann = detector.Detection(Box(*box, 0), "annotation", 0.9)
    pol = textverify.Policy(drop_none=0.9, phi_to_annotation=0.9, annotation_to_phi=0.5)
    assert [d.cls for d in textverify.apply(img, [phi], _fixed((0.03, 0.95, 0.02)), pol)] == ["annotation"]
    assert [d.cls for d in textverify.apply(img, [phi], _fixed((0.15, 0.85, 0.0)), pol)] == ["phi"]
    assert textverify.apply(img, [phi, ann], _fixed((0.02, 0.03, 0.95)), pol) == []
    other = detector.Detection(Box(*box, 0), "nodule", 0.7)  # a project detector's own class: not a text line
    assert textverify.apply(img, [other, phi], _fixed((0.02, 0.03, 0.95)), pol) == [other]
    assert [d.cls for d in textverify.apply(img, [ann], _fixed((0.6, 0.4, 0.0)), pol)] == ["phi"]
    assert [d.cls for d in textverify.apply(img, [ann], _fixed((0.3, 0.7, 0.0)), pol)] == ["annotation"]
    kept = textverify.apply(img, [phi], _fixed((0.5, 0.3, 0.2)), pol)[0]
    assert kept.box == phi.box and kept.confidence == phi.confidence


def test_shipped_verifier_reads_drawn_lines():
    model = textverify.load()
    assert model is not None, "models/verifier/medshield-text-verifier.pt is shipped with the repository"
    assert textverify.load() is model  # once per process
    img, name = _line("SMITH^JOHN  DOB 1970-01-01")
    img2, date = _line("12/03/2025 14:22", dark_on_light=True)
    rng = np.random.default_rng(3)
    blank = (rng.normal(60, 4, (300, 900))).clip(0, 255).astype(np.uint8)
    p = textverify.probabilities(model, img, [name])[0]
    q = textverify.probabilities(model, img2, [date])[0]
    r = textverify.probabilities(model, blank, [(100, 100, 400, 124)])[0]
    assert p.argmax() == 0 and q.argmax() == 0, (p, q)
    assert r.argmax() == 2, r
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-5)


def test_detect_applies_the_verifier_unless_told_not_to():
    img, box = _line("SMITH^JOHN  DOB 1970-01-01")
    model = detector.load()
    without = detector.detect(img, model=model, verifier=None)
    assert any(d.cls == "phi" and d.box.x0 <= box[0] and d.box.x1 >= box[2] for d in without)
    assert detector.detect(img, model=model, verifier=_fixed((0.0, 0.0, 1.0))) == []
    kept = detector.detect(img, model=model, verifier=_fixed((0.98, 0.01, 0.01)))
    assert [(d.box, d.cls) for d in kept] == [(d.box, d.cls) for d in without]
