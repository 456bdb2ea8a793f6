"""Canvas shapes (Fabric.js JSON from streamlit-drawable-canvas) <-> boxes in image pixels.

The canvas shows the image scaled; `scale` is image pixels per canvas pixel. Coordinates are
always stored in image pixels, whatever the display size."""

from __future__ import annotations

from core.geometry import Box


# Fabric.js 7 places an object by its centre unless told otherwise (originX/originY "center" is its
# default; earlier versions used "left"/"top"): every object written here says "left"/"top", and
# every object read is placed by the origin it names (absent: the drawing's own left/top corner).
ORIGIN = {"originX": "left", "originY": "top"}
_SHIFT = {"left": 0.0, "top": 0.0, "center": 0.5, "right": 1.0, "bottom": 1.0}


def _top_left(obj: dict, w: float, h: float) -> tuple[float, float]:
    """The object's top-left corner on the canvas, whatever origin it is placed by."""
    def shift(v) -> float:
        if isinstance(v, (int, float)):
            return float(v)
        return _SHIFT.get(str(v).lower(), 0.0)

    return (float(obj.get("left", 0)) - shift(obj.get("originX", "left")) * w,
            float(obj.get("top", 0)) - shift(obj.get("originY", "top")) * h)


def boxes_from_fabric(json_data: dict | None, scale: float, rows: int, cols: int,
                      frame: int = 0) -> list[Box]:
    out: list[Box] = []
    for obj in (json_data or {}).get("objects", []) or []:
        if str(obj.get("type", "")).lower() != "rect":
            continue
        w = float(obj.get("width", 0)) * float(obj.get("scaleX", 1) or 1)
        h = float(obj.get("height", 0)) * float(obj.get("scaleY", 1) or 1)
        left, top = _top_left(obj, w, h)
        if w < 0:
            left, w = left + w, -w
        if h < 0:
            top, h = top + h, -h
        box = Box(int(left * scale), int(top * scale), int(round((left + w) * scale)),
                  int(round((top + h) * scale)), frame).clip(rows, cols)
        if not box.empty:
            out.append(box)
    return out


def fabric_from_boxes(boxes: list[Box], scale: float, stroke: str = "#e4572e") -> dict:
    return {"version": "7.0.0", "objects": [
        {"type": "Rect", "left": b.x0 / scale, "top": b.y0 / scale, "width": (b.x1 - b.x0) / scale,
         "height": (b.y1 - b.y0) / scale, "fill": "rgba(228,87,46,0.25)", "stroke": stroke,
         "strokeWidth": 2, "scaleX": 1, "scaleY": 1, **ORIGIN} for b in boxes]}


def _abs_points(obj: dict, pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Fabric keeps path/polygon points in the object's own plane: place them on the canvas with
    the object's position (by its origin), the path offset and the scale (no rotation is drawn by this canvas)."""
    sx, sy = float(obj.get("scaleX", 1) or 1), float(obj.get("scaleY", 1) or 1)
    off = obj.get("pathOffset")
    if not off:
        return pts
    w, h = float(obj.get("width", 0)) * sx, float(obj.get("height", 0)) * sy
    x0, y0 = _top_left(obj, w, h)
    cx, cy = x0 + w / 2, y0 + h / 2
    return [(cx + (x - float(off["x"])) * sx, cy + (y - float(off["y"])) * sy) for x, y in pts]


def shapes_from_fabric(json_data: dict | None, scale: float, rows: int, cols: int) -> list[dict]:
    """Rectangles, polygons and free-hand paths as dicts in image pixels:
    {"kind": "rect", "box": [x0, y0, x1, y1]}, {"kind": "polygon", "points": [[x, y], ...]},
    {"kind": "path", "points": [[x, y], ...], "width": stroke width}."""
    out: list[dict] = []
    clip = lambda x, y: [min(max(round(x * scale), 0), cols), min(max(round(y * scale), 0), rows)]  # noqa: E731
    for obj in (json_data or {}).get("objects", []) or []:
        kind = str(obj.get("type", "")).lower()
        if kind == "rect":
            for b in boxes_from_fabric({"objects": [obj]}, scale, rows, cols):
                out.append({"kind": "rect", "box": [b.x0, b.y0, b.x1, b.y1]})
        elif kind in ("polygon", "polyline") and obj.get("points"):
            pts = _abs_points(obj, [(float(p["x"]), float(p["y"])) for p in obj["points"]])
            if len(pts) >= 3:
                out.append({"kind": "polygon", "points": [clip(x, y) for x, y in pts]})
        elif kind == "path" and obj.get("path"):
            raw = []
            for cmd in obj["path"]:
                nums = [float(v) for v in cmd[1:]]
                raw += [(nums[i], nums[i + 1]) for i in range(0, len(nums) - 1, 2)]
            pts = _abs_points(obj, raw)
            if pts:
                closed = str(obj["path"][-1][0]).upper() == "Z"
                out.append({"kind": "polygon" if closed and len(pts) >= 3 else "path",
                            "points": [clip(x, y) for x, y in pts],
                            "width": max(1, round(float(obj.get("strokeWidth", 1)) * scale))})
    return out


def fabric_from_shapes(shapes: list[dict], scale: float, stroke: str = "#2e86de") -> dict:
    objs = []
    for sh in shapes:
        if sh["kind"] == "rect":
            x0, y0, x1, y1 = sh["box"]
            objs.append({"type": "Rect", "left": x0 / scale, "top": y0 / scale, "width": (x1 - x0) / scale,
                         "height": (y1 - y0) / scale, "fill": "rgba(46,134,222,0.2)", "stroke": stroke, "strokeWidth": 2,
                         **ORIGIN})
        else:
            pts = [[x / scale, y / scale] for x, y in sh["points"]]
            cmds = [["M", *pts[0]]] + [["L", *p] for p in pts[1:]] + ([["Z"]] if sh["kind"] == "polygon" else [])
            objs.append({"type": "Path", "path": cmds, "fill": "rgba(46,134,222,0.2)" if sh["kind"] == "polygon" else None,
                         "stroke": stroke, "strokeWidth": max(1, sh.get("width", 2) / scale), **ORIGIN})
    return {"version": "7.0.0", "objects": objs}


def rasterize(shapes: list[dict], rows: int, cols: int) -> "np.ndarray":
    """A binary mask (uint8 0/255) of polygons, rectangles and brush paths."""
    import numpy as np
    from PIL import Image, ImageDraw

    im = Image.new("L", (cols, rows), 0)
    d = ImageDraw.Draw(im)
    for sh in shapes:
        if sh["kind"] == "rect":
            x0, y0, x1, y1 = sh["box"]
            d.rectangle((x0, y0, x1 - 1, y1 - 1), fill=255)
        elif sh["kind"] == "polygon":
            d.polygon([tuple(p) for p in sh["points"]], fill=255)
        else:
            d.line([tuple(p) for p in sh["points"]], fill=255, width=int(sh.get("width", 2)), joint="curve")
    return np.asarray(im)
