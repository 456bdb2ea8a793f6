"""The pretrained OCR eye (PP-OCRv4 via rapidocr-onnxruntime) and the fusion with our YOLO:
weights from the wheel with the network cut, real detection and reading of drawn text, boxes of both
detectors joined per line, and the decision on real pixels."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from core.geometry import Box
from core.imaging.phitext import HeaderValues
from core.ml import detector, ocr, phidetect

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"


def draw(size: tuple[int, int], lines: list[tuple[str, int, int, int]], bg: int = 20, ink: int = 235) -> np.ndarray:
    """A grey image (h, w) with text lines (text, x, y, px height) drawn on it."""
    im = Image.new("L", (size[1], size[0]), bg)
    d = ImageDraw.Draw(im)
    for text, x, y, h in lines:
        d.text((x, y), text, font=ImageFont.truetype(FONT, h), fill=ink)
    return np.asarray(im)


def test_weights_come_from_the_wheel_with_the_network_cut(monkeypatch):
    files = ocr.model_files()
    assert {p.name for p in files.values()} == {ocr.DET_MODEL, ocr.REC_MODEL}
    assert all(p.stat().st_size > 1_000_000 and "site-packages" in str(p) for p in files.values())

    def no_network(*a, **k):
        raise AssertionError("the OCR tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    ocr.load.cache_clear()
    engine = ocr.load()
    img = draw((200, 400), [("JOHN DOE", 20, 30, 22)])
    lines = ocr.detect_lines(img, engine)
    assert lines and ocr.read(img, [(ln.x0, ln.y0, ln.x1, ln.y1) for ln in lines], engine)
    assert ocr.load() is engine  # once per process


def test_missing_weights_are_a_clear_error_not_a_download(monkeypatch, tmp_path):
    from core.errors import NotFound

    monkeypatch.setattr(ocr, "package_dir", lambda: tmp_path)
    with pytest.raises(NotFound, match="nothing is downloaded"):
        ocr.model_files()


def test_detects_and_reads_small_and_large_text():
    img = draw((420, 640), [("DOE^JANE 1957-03-12", 12, 10, 12), ("kVp 80", 500, 380, 16), ("ID 88412377", 200, 200, 30)])
    lines = ocr.detect_lines(img)
    texts = [r.text.replace(" ", "").upper() for r in ocr.read(img, [(ln.x0, ln.y0, ln.x1, ln.y1) for ln in lines])]
    assert any("DOE" in t and "1957" in t for t in texts), texts
    assert any("KVP80" in t for t in texts), texts
    assert any("88412377" in t for t in texts), texts


def test_large_images_are_tiled_and_small_text_still_found():
    h, w = 3200, 2800
    assert ocr.working_scale(h, w) == ocr.TILE_SCALE_MIN_TEXT  # shrunk no further than this, then tiled
    img = draw((h, w), [("SMITH JOHN 0451234", 40, 40, 20), ("12/03/2017", 2500, 3100, 20)])
    lines = ocr.detect_lines(img)
    hit = lambda x, y: any(ln.x0 <= x <= ln.x1 and ln.y0 <= y <= ln.y1 for ln in lines)  # noqa: E731
    assert hit(60, 50) and hit(2560, 3110)
    assert all(0 <= ln.x0 < ln.x1 <= w and 0 <= ln.y0 < ln.y1 <= h for ln in lines)


def test_long_lines_are_read_in_pieces():
    text = "PATIENT NAME WALKER^HENRIETTA  ID 4471902  DOB 1961-07-24  ST. MARY HOSPITAL RADIOLOGY"
    img = draw((60, 1500), [(text, 5, 15, 18)])
    (reading,) = ocr.read(img, [(0, 10, 1500, 42)])
    assert "WALKER" in reading.text.upper() and "4471902" in reading.text.replace(" ", "")


def _det(x0, y0, x1, y1, cls="phi", conf=0.8):
    return detector.Detection(Box(x0, y0, x1, y1), cls, conf)


def test_fusion_joins_one_line_and_keeps_rows_apart():
    yolo = [_det(10, 10, 120, 30)]
    lines = [ocr.Line(12, 9, 60, 31, 0.9), ocr.Line(70, 10, 200, 30, 0.8),  # two pieces, one of them longer
             ocr.Line(10, 50, 120, 70, 0.9)]  # the next row
    cands = phidetect.fuse(yolo, lines)
    assert len(cands) == 2
    first = min(cands, key=lambda c: c.y0)
    assert (first.x0, first.x1, first.sources) == (10, 200, {"yolo", "ocr"})
    assert max(cands, key=lambda c: c.y0).sources == {"ocr"}


def test_fusion_does_not_join_lines_of_very_different_height():
    cands = phidetect.fuse([_det(10, 10, 300, 70)], [ocr.Line(20, 20, 90, 34, 0.9)])
    assert len(cands) == 2


def test_unreadable_boxes_sealed_when_a_detector_is_sure_dropped_when_only_an_unsure_ocr_saw_them():
    sure = phidetect._Cand(0, 0, 10, 10, {"yolo"}, "phi", 0.7)
    assert phidetect._decide(sure, "", 0.0, None, 0.0).reason == "detector"
    unsure_ocr = phidetect._Cand(0, 0, 10, 10, {"ocr"}, ocr_score=0.45)
    assert phidetect._decide(unsure_ocr, "", 0.0, None, 0.0) is None
    sure_ocr = phidetect._Cand(0, 0, 10, 10, {"ocr"}, ocr_score=0.8)
    assert phidetect._decide(sure_ocr, "", 0.0, None, 0.1).reason == "detector"
    assert phidetect._decide(sure_ocr, "", 0.0, None, 0.95) is None  # the verifier sees no text there


def test_find_seals_header_values_and_leaves_technical_lines_visible():
    img = draw((480, 640), [("KOWALSKI^ANNA", 10, 10, 18), ("kVp 120", 520, 440, 16), ("LYMPH NODE", 250, 300, 20)])
    hv = HeaderValues()
    hv.add("PatientName", "KOWALSKI^ANNA")
    regions = phidetect.find(img, header=hv)
    name = [r for r in regions if r.line.y0 < 40 and r.line.x0 < 100]
    assert name and name[0].cls == "phi" and name[0].reason == "header:PatientName"
    assert name[0].box.x0 <= name[0].line.x0 and name[0].box.x1 >= name[0].line.x1  # the margin grows it
    tech = [r for r in regions if r.line.y0 > 420]
    assert tech and all(r.cls == "annotation" and r.reason == "rule:technical" for r in tech)
    sealed_all = phidetect.find(img, header=hv, policy=phidetect.Policy(keep_annotations=False))
    assert all(r.cls == "phi" for r in sealed_all) and len(sealed_all) == len(regions)


def test_blank_image_has_no_regions():
    assert phidetect.find(np.full((300, 400), 40, np.uint8)) == []
