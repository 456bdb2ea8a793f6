"""The detector pipeline with a tiny model built in the test (random weights: shapes and plumbing,
not accuracy), offline; the synthetic-text generator; and the fallback without weights."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from core.geometry import Box
from core.hashing import file_sha256
from core.ml import detector, yolo_env
from core.ml.detector import Detection, _merge_lines, _tiles
from core.ml.synth import CLASSES, TRAIN_FONTS, Sample, TextFactory, crop_tile, font_paths, render, yolo_label


def test_tiles_cover_the_image():
    for h, w in [(416, 416), (500, 3000), (2999, 2001)]:
        covered = np.zeros((h, w), bool)
        for y, x in _tiles(h, w):
            covered[y:y + 416, x:x + 416] = True
        assert covered.all()


def test_line_pieces_are_merged():
    a = Detection(Box(10, 100, 300, 120), "phi", 0.9)
    b = Detection(Box(290, 101, 600, 121), "phi", 0.8)
    c = Detection(Box(10, 300, 100, 320), "phi", 0.7)
    merged = _merge_lines([b, c, a])
    assert Detection(Box(10, 100, 600, 121), "phi", 0.9) in merged and len(merged) == 2


def test_banner_fields_and_double_sightings_are_one_box():
    # fields of one banner, a line height apart, in any input order
    f1, f2 = Detection(Box(10, 10, 100, 30), "phi", 0.9), Detection(Box(120, 11, 200, 31), "phi", 0.6)
    assert _merge_lines([f2, f1]) == [Detection(Box(10, 10, 200, 31), "phi", 0.9)]
    # too far apart, another class, or a much taller box: kept apart
    far = Detection(Box(300, 10, 400, 30), "phi", 0.5)
    ann = Detection(Box(105, 10, 118, 30), "annotation", 0.5)
    tall = Detection(Box(0, 0, 90, 80), "phi", 0.5)
    assert len(_merge_lines([f1, far])) == 2 and len(_merge_lines([f1, ann])) == 2 and len(_merge_lines([f1, tall])) == 2
    # the same line seen by two tiles, one box inside the other
    inner = Detection(Box(20, 12, 60, 28), "phi", 0.4)
    assert _merge_lines([inner, f1]) == [Detection(Box(10, 10, 100, 30), "phi", 0.9)]


def test_coarse_whole_image_boxes_only_stretch_tile_boxes_on_their_line():
    tiles = [np.array([[100.0, 50, 180, 70], [100, 200, 150, 220], [300, 400, 340, 420], [300, 430, 420, 450]])]
    scores, classes = [np.array([0.9, 0.8, 0.8, 0.8])], [np.array([0, 0, 0, 0])]
    coarse = (np.array([[60.0, 48, 260, 72], [500, 500, 560, 540], [90, 190, 300, 230], [290, 398, 430, 452]]),
              np.array([0.3, 0.4, 0.3, 0.3]), np.array([0, 0, 1, 0]))
    detector._use_coarse(tiles, scores, classes, coarse)
    assert tiles[0][0].tolist() == [60, 50, 260, 70]  # stretched along its line, not made taller
    assert tiles[0][1].tolist() == [100, 200, 150, 220]  # the coarse box over it is another class
    # a coarse box over a block of two lines widens neither to the block's longest, nor stands on its own
    assert tiles[0][2].tolist() == [300, 400, 340, 420] and tiles[0][3].tolist() == [300, 430, 420, 450]
    # nothing found there by the tiles: kept; the tiles read the text under the other-class box: dropped
    assert np.concatenate(tiles[1:]).tolist() == [[500, 500, 560, 540]]


def test_a_coarse_box_between_two_lines_stretches_neither():
    """The shrunk whole-image view drew a box half a line off (between two right-aligned lines, as
    long as the longer one): the shorter line it overlaps must not grow to its length."""
    tiles = [np.array([[300.0, 63, 402, 80], [250, 84, 402, 101]])]
    scores, classes = [np.array([0.8, 0.8])], [np.array([0, 0])]
    detector._use_coarse(tiles, scores, classes, (np.array([[197.0, 47, 400, 74]]), np.array([0.3]), np.array([0])))
    assert tiles[0].tolist() == [[300, 63, 402, 80], [250, 84, 402, 101]] and len(tiles) == 1


def test_a_whole_image_box_around_a_block_of_tile_lines_gives_way_to_them():
    """On a tiled image the whole-image pass drew one 50-px box around three 16-px lines the tiles read
    one by one: the lines stand, the block box does not (it would be a fourth, wrong-shaped box)."""
    from core.ml.detector import Pass, combine

    lines = [[1420, 1486, 1566, 1502], [1438, 1504, 1566, 1520], [1419, 1523, 1566, 1539]]
    whole = Pass(np.array([[1423.0, 1494, 1580, 1543]]), np.array([0.45]), np.array([0]))
    tile = Pass(np.array(lines, float), np.array([0.9, 0.8, 0.85]), np.zeros(3, int), (1152, 1152))
    got = combine([whole, tile], 1600, 1600)
    assert sorted((d.box.x0, d.box.y0, d.box.x1, d.box.y1) for d in got) == sorted(map(tuple, lines))
    # with no tile line under it, the same box is all there is, and stands
    got = combine([whole, Pass(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), (1152, 1152))], 1600, 1600)
    assert [(d.box.x0, d.box.y0, d.box.x1, d.box.y1) for d in got] == [(1423, 1494, 1580, 1543)]


def test_tile_border_boxes_need_a_second_sighting():
    """On a 1000 x 1000 image the tiles start at 0, 288, 576 (and end at 1000): a box at a border
    two tiles share is kept only when another pass saw text there."""
    from core.ml.detector import Pass, combine

    h = w = 1000
    empty = Pass(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))

    def tile(y, x, boxes):
        xyxy = np.array(boxes, float).reshape(-1, 4)
        return Pass(xyxy, np.full(len(xyxy), 0.6), np.zeros(len(xyxy), int), (y, x))

    phantom = tile(288, 288, [[290, 400, 340, 410]])  # at the tile's left border (x=288), nothing else there
    assert combine([empty, phantom], h, w) == []
    # a line cut by the same border: the tile to the left (0..416) saw it whole
    cut = tile(288, 288, [[288, 500, 330, 520]])
    left = tile(288, 0, [[250, 500, 330, 520]])
    got = combine([empty, cut, left], h, w)
    assert [(d.box.x0, d.box.x1) for d in got] == [(250, 330)]
    # the image's own border is no tile border: a line there stands alone
    corner = tile(0, 0, [[0, 2, 60, 14]])
    assert len(combine([empty, corner], h, w)) == 1
    # and a box inside the tile needs nobody
    inner = tile(288, 288, [[400, 400, 500, 415]])
    assert len(combine([empty, inner], h, w)) == 1


def test_a_strip_cut_off_by_a_tile_border_gives_way_to_the_whole_line():
    """Tiles starting at y=0 and y=288 on a 1000 x 1000 image: the upper one's bottom border (416)
    cuts the top strip off a line the lower one sees whole. One box for the line, not a sliver too;
    but a piece that reaches beyond what the other pass saw is kept (and joins the line)."""
    from core.ml.detector import Pass, combine

    h = w = 1000
    empty = Pass(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))

    def tile(y, x, boxes, conf=0.6):
        xyxy = np.array(boxes, float).reshape(-1, 4)
        return Pass(xyxy, np.full(len(xyxy), conf), np.zeros(len(xyxy), int), (y, x))

    strip, whole = tile(0, 0, [[100, 404, 300, 416]], 0.7), tile(288, 0, [[98, 402, 302, 432]])
    got = combine([empty, strip, whole], h, w)
    assert [(d.box.x0, d.box.y0, d.box.x1, d.box.y1) for d in got] == [(98, 402, 302, 432)]
    # the other pass saw only part of this line (up to x=250): the piece is kept and the line is whole
    longer = tile(288, 0, [[98, 402, 250, 432]])
    got = combine([empty, tile(0, 0, [[100, 404, 300, 416]], 0.7), longer], h, w)
    assert min(d.box.x0 for d in got) <= 100 and max(d.box.x1 for d in got) >= 300


def test_sealing_margin_is_wider_at_the_line_ends():
    g = detector._grow(Box(100, 100, 200, 120), 1000, 1000, detector.PAD)
    assert 100 - g.x0 > 100 - g.y0 >= 2 and g.x1 - 200 == 100 - g.x0 and g.y1 - 120 == 100 - g.y0


def test_synthetic_samples_are_well_formed():
    rng = np.random.default_rng(0)
    bg = (np.random.default_rng(1).random((300, 400)) * 255).astype(np.uint8)
    for _ in range(5):
        s = render(bg, rng, TextFactory(0), font_paths(TRAIN_FONTS), long_side=900)
        h, w = s.image.shape[:2]
        assert s.boxes and all(0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h for _, x0, y0, x1, y1 in s.boxes)
        assert s.ink is not None and s.ink.shape == (h, w)
        assert all(s.ink[y0:y1, x0:x1].any() for _, x0, y0, x1, y1 in s.boxes)  # every line has its own ink
        t = crop_tile(s, rng, 416)
        assert t.image.shape[0] <= 416 and t.image.shape[1] <= 416
        for line in yolo_label(t).splitlines():
            c, *xywh = line.split()
            assert int(c) in (0, 1) and all(0 <= float(v) <= 1 for v in xywh)


def test_rich_training_text_and_cut_lines_keep_their_pieces():
    rng = np.random.default_rng(3)
    bg = (np.random.default_rng(4).random((600, 800)) * 255).astype(np.uint8)
    texts = TextFactory(3)
    s = render(bg, rng, texts, font_paths(TRAIN_FONTS), long_side=1200, rich=True)
    assert {c for c, *_ in s.boxes} == {0, 1}  # rich training images always carry annotation text too
    # a line longer than the tile: the piece a crop sees stays labelled (inference tiles cut lines the same way)
    img = np.zeros((400, 1500), np.uint8)
    line = Sample(img, [(0, 20, 100, 1400, 130)])
    native = 0
    for k in range(12):
        cut, plain = (crop_tile(line, np.random.default_rng(k), 416, keep_pieces=kp) for kp in (True, False))
        if cut.image.shape == (400, 416):  # a native-scale crop (the others show the whole image scaled down)
            native += 1
            assert len(cut.boxes) == 1 and cut.boxes[0][4] - cut.boxes[0][2] == 30 and not plain.boxes
    assert native >= 3


def test_synthetic_text_does_not_depend_on_the_hash_seed():
    """Evaluation sets must be the same in every process (Faker's it_IT cities come from a set)."""
    import subprocess
    import sys

    code = ("from core.ml.synth import TextFactory; t = TextFactory(5); "
            "print([t.phi() for _ in range(400)] + [t.fake.city() for _ in range(200)])")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**__import__("os").environ, "PYTHONHASHSEED": str(k)}).stdout for k in (1, 2, 3)}
    assert len(outs) == 1


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    cfg = tmp_path_factory.mktemp("yolo")
    yolo_env.configure(cfg)
    YOLO = yolo_env.import_yolo()
    model = YOLO("yolov8n.yaml")
    path = cfg / "tiny.pt"
    model.save(str(path))
    return str(path)


def test_detect_runs_offline_on_large_images(tiny_weights, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the detector tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    img = (np.random.default_rng(2).random((1500, 2600)) * 255).astype(np.uint8)
    dets = detector.detect(img, conf=0.001, weights=tiny_weights)
    for d in dets:
        assert 0 <= d.box.x0 < d.box.x1 <= 2600 and 0 <= d.box.y0 < d.box.y1 <= 1500
        assert 0.0 <= d.confidence <= 1.0
    assert detector.load(tiny_weights) is detector.load(tiny_weights)  # loaded once per process


def test_ultralytics_leaves_the_process_its_threads(tiny_weights):
    """ultralytics sets torch's thread count to os.cpu_count() - 1 (at most 8) on every CPU predict:
    one thread on a 2-core machine, for every model of the process. The count the process had stays."""
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(11)  # never ultralytics' own choice
        yolo_env.import_yolo()
        detector.detect(np.zeros((300, 300), np.uint8), model=detector.load(tiny_weights))
        assert torch.get_num_threads() == 11
    finally:
        torch.set_num_threads(before)


def test_weights_are_checked(tiny_weights):
    from core.errors import IntegrityError, NotFound

    with pytest.raises(IntegrityError):
        detector.load(tiny_weights, sha256="0" * 64)
    with pytest.raises(NotFound, match="train_detector"):
        detector.load("/nonexistent/model.pt")


def test_classes():
    assert CLASSES == ("phi", "annotation")


def test_ultralytics_does_not_change_how_broken_uploads_are_refused(tiny_weights):
    """Regression: importing ultralytics patched PIL.Image.open, and a broken PNG then raised
    ModuleNotFoundError (pi_heif) instead of a clear refusal."""
    from PIL import Image

    from core.errors import InvalidImage
    from core.imaging.decode import decode_image

    detector.load(tiny_weights)
    assert Image.open.__module__.startswith("PIL")
    with pytest.raises(InvalidImage, match="PNG"):
        decode_image(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)


def test_shipped_weights_are_registered_once_and_verified(rt, tiny_weights, monkeypatch, admin, tmp_path):
    import shutil

    from core.errors import IntegrityError
    from core.services import models

    from tests.conftest import deploy_test_model

    weights = tmp_path / "shipped.pt"
    shutil.copyfile(tiny_weights, weights)
    monkeypatch.setitem(models.SHIPPED, "detector", (str(weights), str(tmp_path / "none.json"), "tiny"))
    first = models.register_shipped(rt)
    assert models.register_shipped(rt) == first  # idempotent
    deploy_test_model(rt, "detector", weights)
    info = models.deployed("detector", rt)
    assert info.deployed and info.sha256 == file_sha256(weights)
    assert [m.task for m in models.list_models(admin)].count("detector") >= 1
    path, sha = models.deployed_weights("detector")
    detector.load.cache_clear()
    assert detector.load(path, sha) is not None
    with open(weights, "ab") as fh:
        fh.write(b"tampered")
    detector.load.cache_clear()
    with pytest.raises(IntegrityError):
        detector.load(path, sha)
    detector.load.cache_clear()


def test_prelabels_come_from_the_deployed_detector(rt, make_user, tiny_weights, monkeypatch, tmp_path):
    import shutil

    from core.services import annotate, ingest, models
    from tests.fixtures import png_bytes

    from tests.conftest import deploy_test_model

    weights = tmp_path / "det.pt"
    shutil.copyfile(tiny_weights, weights)
    deploy_test_model(rt, "detector", weights)
    tech = make_user("technician")
    image_id = ingest.ingest_files(tech, [("p.png", png_bytes(300, 500, seed=70))]).results[0].image_id
    shapes = annotate.prelabel(tech, image_id)
    assert all(s["kind"] == "rect" and 0 <= s["box"][0] < s["box"][2] <= 500 for s in shapes)
    detector.load.cache_clear()
