"""Canvas shapes (Fabric.js JSON from streamlit-drawable-canvas) <-> boxes in image pixels.

The canvas shows the image scaled; `scale` is image pixels per canvas pixel. Coordinates are
always stored in image pixels, whatever the display size."""

from __future__ import annotations

from core.crypto.sealing import Box


def boxes_from_fabric(json_data: dict | None, scale: float, rows: int, cols: int,
                      frame: int = 0) -> list[Box]:
    out: list[Box] = []
    for obj in (json_data or {}).get("objects", []) or []:
        if str(obj.get("type", "")).lower() != "rect":
            continue
        left, top = float(obj.get("left", 0)), float(obj.get("top", 0))
        w = float(obj.get("width", 0)) * float(obj.get("scaleX", 1) or 1)
        h = float(obj.get("height", 0)) * float(obj.get("scaleY", 1) or 1)
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
         "strokeWidth": 2, "scaleX": 1, "scaleY": 1} for b in boxes]}
