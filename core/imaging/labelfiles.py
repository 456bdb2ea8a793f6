"""Box and polygon label files that come with a dataset zip: YOLO (`labels/*.txt` with
`classes.txt` or `data.yaml`) and COCO (`annotations.json`). Every file is parsed and checked
before anything is stored; a malformed one is refused with a message naming it.

Shapes come out in the annotation format of `core.services.annotate` (image pixels):
`{"kind": "rect", "label", "box": [x0, y0, x1, y1]}` or `{"kind": "polygon", "label", "points"}`.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field

from core.errors import InvalidArchive

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", "")


@dataclass
class ParsedLabels:
    format: str  # yolo, coco, or "" when the zip carries no box files
    classes: list[str] = field(default_factory=list)
    # image path in the zip -> shapes; YOLO coordinates are still normalised (0..1) here
    shapes: dict[str, list[dict]] = field(default_factory=dict)
    normalised: bool = False


def _stem(path: str) -> str:
    base = posixpath.basename(path)
    return base.rsplit(".", 1)[0] if "." in base else base


def _yolo_classes(sidecars: dict[str, bytes]) -> list[str] | None:
    for path, raw in sidecars.items():
        if posixpath.basename(path).lower() == "classes.txt":
            names = [ln.strip() for ln in raw.decode("utf-8", "replace").splitlines() if ln.strip()]
            if not names:
                raise InvalidArchive("classes.txt is empty.")
            return names
    for path, raw in sidecars.items():
        if posixpath.basename(path).lower() in ("data.yaml", "data.yml", "dataset.yaml"):
            import yaml

            try:
                doc = yaml.safe_load(raw.decode("utf-8", "replace"))
            except yaml.YAMLError as exc:
                raise InvalidArchive(f"{posixpath.basename(path)} is not valid YAML.") from exc
            names = doc.get("names") if isinstance(doc, dict) else None
            if isinstance(names, dict):
                try:
                    return [str(names[k]) for k in sorted(names, key=int)]
                except (TypeError, ValueError) as exc:
                    raise InvalidArchive("data.yaml `names` must map class numbers to names.") from exc
            if isinstance(names, list) and names:
                return [str(n) for n in names]
            raise InvalidArchive("data.yaml has no `names` list of classes.")
    return None


def _parse_yolo_file(path: str, raw: bytes, n_classes: int) -> list[dict]:
    out = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArchive(f"Label file {path[:80]!r} is not UTF-8 text.") from exc
    for n, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{posixpath.basename(path)[:60]} line {n}"
        try:
            cls = int(parts[0])
            vals = [float(v) for v in parts[1:]]
        except ValueError as exc:
            raise InvalidArchive(f"{where}: expected a class number and coordinates.") from exc
        if not 0 <= cls < n_classes:
            raise InvalidArchive(f"{where}: class {cls} is not in the class list ({n_classes} classes).")
        if any(not (-1e-3 <= v <= 1 + 1e-3) for v in vals):
            raise InvalidArchive(f"{where}: YOLO coordinates must be normalised to 0..1.")
        vals = [min(1.0, max(0.0, v)) for v in vals]
        if len(vals) == 4:
            cx, cy, w, h = vals
            if w <= 0 or h <= 0:
                raise InvalidArchive(f"{where}: a box needs a positive width and height.")
            out.append({"kind": "rect", "cls": cls, "box": [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]})
        elif len(vals) >= 6 and len(vals) % 2 == 0:
            out.append({"kind": "polygon", "cls": cls, "points": [[vals[i], vals[i + 1]] for i in range(0, len(vals), 2)]})
        else:
            raise InvalidArchive(f"{where}: expected 4 box values or an even number (>= 6) of polygon values.")
    return out


def parse_label_files(image_paths: list[str], sidecars: dict[str, bytes]) -> ParsedLabels:
    """Find and check YOLO or COCO labels for the zip's images."""
    by_stem: dict[str, str] = {}
    for p in image_paths:
        by_stem.setdefault(_stem(p).lower(), p)
    coco = [p for p in sidecars if p.lower().endswith(".json") and posixpath.basename(p).lower() != "labels.json"]
    yolo_txt = [p for p in sidecars if p.lower().endswith(".txt") and posixpath.basename(p).lower() != "classes.txt"
                and ("labels/" in p.lower() or _stem(p).lower() in by_stem)]
    if coco:
        return _parse_coco(coco[0], sidecars[coco[0]], image_paths)
    if not yolo_txt:
        return ParsedLabels("")
    classes = _yolo_classes(sidecars)
    if classes is None:
        raise InvalidArchive("YOLO label files need a classes.txt or data.yaml with the class names.")
    out = ParsedLabels("yolo", classes, normalised=True)
    for p in yolo_txt:
        img = by_stem.get(_stem(p).lower())
        if img is None:
            raise InvalidArchive(f"Label file {posixpath.basename(p)[:60]!r} has no image of the same name.")
        shapes = _parse_yolo_file(p, sidecars[p], len(classes))
        out.shapes[img] = [{**{k: v for k, v in sh.items() if k != "cls"}, "label": classes[sh["cls"]]} for sh in shapes]
    return out


def _parse_coco(path: str, raw: bytes, image_paths: list[str]) -> ParsedLabels:
    name = posixpath.basename(path)[:60]
    try:
        doc = json.loads(raw.decode("utf-8"))
        images = {int(i["id"]): (str(i["file_name"]), int(i["width"]), int(i["height"])) for i in doc["images"]}
        cats = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
        anns = list(doc.get("annotations", []))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise InvalidArchive(f"{name} is not a COCO file (images, categories, annotations).") from exc
    by_base = {posixpath.basename(p).lower(): p for p in image_paths}
    out = ParsedLabels("coco", [cats[k] for k in sorted(cats)])
    for n, a in enumerate(anns, start=1):
        try:
            file_name, w, h = images[int(a["image_id"])]
            label = cats[int(a["category_id"])]
            x, y, bw, bh = (float(v) for v in a["bbox"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArchive(f"{name}: annotation {n} names an unknown image or category, or has no bbox.") from exc
        img = by_base.get(posixpath.basename(file_name).lower())
        if img is None:
            raise InvalidArchive(f"{name}: annotation {n} is for {posixpath.basename(file_name)[:60]!r}, not in the zip.")
        if bw <= 0 or bh <= 0 or x < -0.5 or y < -0.5 or x + bw > w + 0.5 or y + bh > h + 0.5:
            raise InvalidArchive(f"{name}: annotation {n} has a box outside its {w}x{h} image.")
        seg = a.get("segmentation")
        if isinstance(seg, list) and seg and isinstance(seg[0], list) and len(seg[0]) >= 6 and len(seg[0]) % 2 == 0:
            pts = seg[0]
            shape = {"kind": "polygon", "label": label, "points": [[float(pts[i]), float(pts[i + 1])] for i in range(0, len(pts), 2)]}
        else:
            shape = {"kind": "rect", "label": label, "box": [x, y, x + bw, y + bh]}
        shape["expect_size"] = [h, w]
        out.shapes.setdefault(img, []).append(shape)
    return out


def to_pixels(shapes: list[dict], rows: int, cols: int, normalised: bool, name: str) -> list[dict]:
    """Image-pixel shapes, clipped to the image; a COCO size that disagrees with the image is refused."""
    out = []
    for sh in shapes:
        exp = sh.get("expect_size")
        if exp and (abs(exp[0] - rows) > 1 or abs(exp[1] - cols) > 1):
            raise InvalidArchive(f"{name}: the label file says {exp[1]}x{exp[0]} but the image is {cols}x{rows}.")
        sx, sy = (cols, rows) if normalised else (1, 1)
        if sh["kind"] == "rect":
            x0, y0, x1, y1 = sh["box"]
            box = [max(0, int(round(x0 * sx))), max(0, int(round(y0 * sy))), min(cols, int(round(x1 * sx))),
                   min(rows, int(round(y1 * sy)))]
            if box[2] > box[0] and box[3] > box[1]:
                out.append({"kind": "rect", "label": sh["label"], "box": box})
        else:
            pts = [[min(cols, max(0, int(round(x * sx)))), min(rows, max(0, int(round(y * sy))))] for x, y in sh["points"]]
            out.append({"kind": "polygon", "label": sh["label"], "points": pts})
    return out
