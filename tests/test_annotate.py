from __future__ import annotations

import numpy as np
import pytest

from core.errors import AccessDenied, ValidationError
from core.imaging.canvas import fabric_from_shapes, rasterize, shapes_from_fabric
from core.imaging.display import WINDOW_PRESETS, raw_window, to_display_uint8
from core.services import annotate, ingest
from tests.fixtures import png_bytes

SHAPES = [{"kind": "rect", "label": "nodule", "box": [10, 10, 40, 30]},
          {"kind": "polygon", "label": "lung", "points": [[50, 50], [90, 50], [90, 90], [50, 90]]},
          {"kind": "path", "label": "lesion", "points": [[5, 80], [20, 85], [30, 95]], "width": 6}]


def test_canvas_round_trip_in_image_pixels():
    scale = 2.5  # a 250 px image shown 100 px wide
    fabric = fabric_from_shapes(SHAPES, scale)
    back = shapes_from_fabric(fabric, scale, 250, 250)
    assert [s["kind"] for s in back] == ["rect", "polygon", "path"]
    assert back[0]["box"] == [10, 10, 40, 30]
    assert back[1]["points"] == [[50, 50], [90, 50], [90, 90], [50, 90]]
    assert back[2]["points"][0] == [5, 80] and abs(back[2]["width"] - 6) <= 1


def test_moved_path_lands_where_it_was_moved():
    obj = {"type": "Path", "left": 110, "top": 20, "width": 40, "height": 30, "scaleX": 1, "scaleY": 1,
           "pathOffset": {"x": 30, "y": 35}, "path": [["M", 10, 20], ["L", 50, 20], ["L", 50, 50], ["Z"]]}
    (shape,) = shapes_from_fabric({"objects": [obj]}, 1.0, 300, 300)
    assert shape["points"][0] == [110, 20]  # moved 100 px right of where it was drawn


def test_rasterize_masks():
    m = rasterize(SHAPES, 100, 100)
    assert m.dtype == np.uint8 and m[20, 20] == 255 and m[70, 70] == 255 and m[0, 99] == 0


def test_window_presets_in_hu():
    raw = np.array([[0, 1000, 1040, 1440]], dtype=np.int16)  # intercept -1024: -1024, -24, 16, 416 HU
    center, width = raw_window(WINDOW_PRESETS["soft tissue"], (1.0, -1024.0))
    assert (center, width) == (1064.0, 400.0)
    view = to_display_uint8(raw, window=(center, width))
    assert view[0, 0] == 0 and view[0, 3] == 255 and 0 < view[0, 2] < 255


def test_save_review_and_next_image(rt, make_user):
    tech, doc = make_user("technician"), make_user("doctor")
    ids = [r.image_id for r in ingest.ingest_files(tech, [(f"{i}.png", png_bytes(100, 100, seed=40 + i)) for i in range(3)]).results]
    assert annotate.next_image(tech) == ids[0]
    a = annotate.save(tech, ids[0], SHAPES, image_label="PNEUMONIA", use_for_training=True)
    assert a.status == "pending" and len(a.shapes) == 3 and a.image_label == "PNEUMONIA"
    a = annotate.save(tech, ids[0], SHAPES[:1], image_label="PNEUMONIA")
    assert a.status == "modified" and len(a.shapes) == 1
    with pytest.raises(ValidationError):
        annotate.save(tech, ids[1], [{"kind": "rect", "label": "x", "box": [0, 0, 500, 10]}])
    with pytest.raises(ValidationError):
        annotate.save(tech, ids[1], [{"kind": "rect", "label": "", "box": [0, 0, 5, 10]}])
    with pytest.raises(AccessDenied):
        annotate.review(tech, ids[0], True)  # approval is a doctor's action
    assert annotate.review(doc, ids[0], True, "ok").status == "approved"
    assert annotate.next_image(doc) == ids[1]
    from core.db.models import Image

    with rt.session() as s:
        assert s.get(Image, ids[0]).label == "PNEUMONIA"


def test_canvas_objects_are_placed_by_their_origin():
    """Fabric.js 7 places objects by their centre unless told otherwise: what is written says
    left/top, and what is read is placed by the origin it names."""
    from core.crypto.sealing import Box
    from core.imaging.canvas import boxes_from_fabric, fabric_from_boxes

    (obj,) = fabric_from_boxes([Box(100, 40, 300, 60)], 2.0)["objects"]
    assert (obj["originX"], obj["originY"], obj["left"], obj["top"]) == ("left", "top", 50, 20)
    assert all(o["originX"] == "left" and o["originY"] == "top" for o in fabric_from_shapes(SHAPES, 1.0)["objects"])
    centred = {"type": "Rect", "originX": "center", "originY": "center", "left": 100, "top": 25, "width": 100,
               "height": 10, "scaleX": 1, "scaleY": 1}
    assert boxes_from_fabric({"objects": [centred]}, 2.0, 500, 500) == [Box(100, 40, 300, 60)]
    path = {"type": "Path", "originX": "center", "originY": "center", "left": 130, "top": 35, "width": 40,
            "height": 30, "pathOffset": {"x": 30, "y": 35}, "path": [["M", 10, 20], ["L", 50, 20], ["L", 50, 50], ["Z"]]}
    (shape,) = shapes_from_fabric({"objects": [path]}, 1.0, 300, 300)
    assert shape["points"][0] == [110, 20]
