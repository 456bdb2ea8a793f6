"""Synthetic burned-in patient text, drawn the way scanners draw it, onto real images.

Each line of text is one box. Class 0 `phi`: names, ids/MRNs, accession numbers, dates and
times in many formats, age/sex tags, institutions. Class 1 `annotation`: laterality, view,
technique values, scale marks and other text that identifies nobody (policy may keep it).
"""

from __future__ import annotations

import io
from datetime import datetime
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

CLASSES = ("phi", "annotation")
TRAIN_FONTS = ["dejavu/DejaVuSans.ttf", "dejavu/DejaVuSansMono.ttf", "dejavu/DejaVuSans-Bold.ttf",
               "liberation/LiberationSans-Regular.ttf", "liberation/LiberationMono-Regular.ttf",
               "dejavu/DejaVuSansCondensed.ttf", "liberation/LiberationSans-Bold.ttf"]
HELDOUT_FONTS = ["freefont/FreeSans.ttf", "freefont/FreeMono.ttf", "liberation/LiberationSerif-Regular.ttf",
                 "dejavu/DejaVuSerif.ttf", "freefont/FreeSansBold.ttf"]
FONT_ROOT = Path("/usr/share/fonts/truetype")


def font_paths(names: list[str]) -> list[Path]:
    paths = [FONT_ROOT / n for n in names if (FONT_ROOT / n).exists()]
    if not paths:
        raise FileNotFoundError("No TrueType fonts found: install fonts-dejavu-core fonts-liberation fonts-freefont-ttf")
    return paths


_DATE_FORMATS = ["%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y%m%d", "%d-%b-%Y", "%b %d %Y", "%d %B %Y",
                 "%Y/%m/%d", "%d-%m-%y"]
# fixed bounds, not "now": the same seed draws the same text on any day (reproducible evaluation sets)
_NOW, _EPOCH_90Y, _UNIX = datetime(2026, 1, 1), datetime(1936, 1, 1), datetime(1970, 1, 1)
_TIME_FORMATS = ["%H:%M", "%H:%M:%S", "%I:%M %p", "%H%M%S"]
_ANNOTATIONS = ["L", "R", "AP", "PA", "LAT", "PORTABLE", "SUPINE", "ERECT", "UPRIGHT", "kVp 80", "kVp 120",
                "mAs 2.5", "mAs 16", "W:400 L:40", "WW 1500 WL -600", "5 cm", "10 mm", "1 cm", "Se: 3", "Im: 12/40",
                "Gain 52", "DR 60", "FR 25Hz", "2D", "C5-1", "THI", "Depth 16cm", "ABD", "CHEST", "INSP",
                "Zoom 1.5", "Slice 5.0mm", "Tilt 0.0", "TE 12", "TR 520", "HEAD FIRST", "+", "* ", "x1.0"]


class TextFactory:
    """Random PHI and annotation strings (Faker, several locales)."""

    def __init__(self, seed: int):
        from faker import Faker

        self.fake = Faker(["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL"])
        self.fake.seed_instance(seed)
        for factory in self.fake.factories:  # it_IT's city list comes from a set: its order follows the hash seed
            for provider in factory.get_providers():
                if isinstance(getattr(provider, "cities", None), list):
                    provider.cities = sorted(provider.cities)
        self.rng = np.random.default_rng(seed)

    def _date(self) -> str:
        d = self.fake.date_time_between(start_date=_EPOCH_90Y, end_date=_NOW)
        return d.strftime(str(self.rng.choice(_DATE_FORMATS)))

    def phi(self) -> str:
        f, r = self.fake, self.rng
        kind = r.integers(0, 12)
        if kind == 0:
            return f.name()
        if kind == 1:
            last, first = f.last_name(), f.first_name()
            return str(r.choice([f"{last.upper()}^{first}", f"{last}, {first}", f"{last.upper()} {first.upper()}"]))
        if kind == 2:
            return str(r.choice(["ID: ", "MRN ", "PID:", "Pat ID ", "", "Patient ID: "])) + str(
                r.choice([f.bothify("########"), f.bothify("??######").upper(), f.bothify("###-##-####"), str(r.integers(10**5, 10**10))]))
        if kind == 3:
            return str(r.choice(["Acc: ", "ACC#", "Accession ", ""])) + f.bothify("??#######").upper()
        if kind == 4:
            return str(r.choice(["DOB: ", "Born ", "", "DOB "])) + self._date()
        if kind == 5:
            t = self.fake.date_time_between(start_date=_UNIX, end_date=_NOW)
            return self._date() + " " + t.strftime(str(r.choice(_TIME_FORMATS)))
        if kind == 6:
            age, sex = int(r.integers(0, 99)), str(r.choice(["M", "F"]))
            return str(r.choice([f"[{sex}]", f"{sex}/{age}", f"{age}Y {sex}", f"{age}y", f"Age {age} {sex}", f"{sex} {age:03d}Y"]))
        if kind == 7:
            return str(r.choice([f.company() + " Hospital", "St. " + f.last_name() + " Medical Center",
                                 f.city() + " General", f.city() + " Radiology", "Univ. Clinic " + f.city()]))
        if kind == 8:
            return f.name() + "  " + self._date()
        if kind == 9:
            return str(r.choice(["Dr. ", "Ref: ", "Phys: "])) + f.last_name()
        if kind == 10:
            return self._date()
        return f.last_name().upper() + " " + f.bothify("#######") + " " + str(r.choice(["M", "F"]))

    def tag(self) -> str:
        """A short PHI token standing alone: age/sex tags, a bare date, initials and numbers."""
        f, r = self.fake, self.rng
        age, sex = int(r.integers(0, 99)), str(r.choice(["M", "F", "O"]))
        return str(r.choice([f"[{sex}]", f"{sex}/{age}", f"{age}Y", f"{age}y {sex}", f"({sex})", f"{age:03d}Y",
                             self._date(), f.bothify("#####"), f.first_name()[0] + f.last_name()[0], f.last_name()]))

    def annotation(self) -> str:
        return str(self.rng.choice(_ANNOTATIONS))

    def annotation_varied(self) -> str:
        """Annotation text with varied values and words (training's richer mix): technique,
        windowing, series/image numbers, probe and Doppler settings, measurements, views, body parts."""
        r = self.rng
        if r.random() < 0.3:
            return self.annotation()
        n = lambda lo, hi: int(r.integers(lo, hi))  # noqa: E731
        x = lambda lo, hi, d=1: f"{r.uniform(lo, hi):.{d}f}"  # noqa: E731
        return str(r.choice([
            f"kVp {n(50, 141)}", f"kV: {n(60, 141)}", f"mAs {x(0.5, 40)}", f"mA {n(20, 400)}", f"EI {n(100, 900)}",
            f"W:{n(50, 2000)} L:{n(-700, 400)}", f"WW {n(50, 2000)} WL {n(-700, 400)}", f"C {n(-100, 400)} W {n(50, 2000)}",
            f"Se: {n(1, 20)}", f"Im: {n(1, 300)}/{n(300, 600)}", f"Ser {n(1, 20)} Img {n(1, 300)}", f"Slice {x(0.5, 10)}mm",
            f"Thk {x(0.5, 10, 2)} mm", f"Loc: {x(-300, 300)}", f"FOV {n(18, 50)} cm", f"Zoom {x(0.8, 4)}", f"Tilt {x(-20, 20)}",
            f"TE {n(8, 120)}", f"TR {n(400, 6000)}", f"TI {n(100, 2500)}", f"b={n(0, 2000)}",
            f"Gain {n(20, 90)}", f"Gn {n(20, 90)}", f"DR {n(40, 90)}", f"FR {n(8, 80)}Hz", f"{n(8, 80)}Hz", f"Depth {n(2, 25)}cm",
            f"{n(2, 25)}cm", f"MI {x(0.1, 1.9)}", f"TIS {x(0.1, 2.0)}", f"TIB {x(0.1, 2.0)}", f"PRF {x(0.5, 9)}kHz",
            f"WF {n(25, 400)}Hz", f"PWR {n(10, 101)}%", f"Freq {x(2, 15)}MHz", f"C {n(20, 90)}", f"{n(1, 6)}/{n(1, 6)}/{n(1, 6)}",
            f"Dist {x(0.1, 15, 2)} cm", f"+ Dist {x(0.1, 15, 2)}cm", f"Area {x(0.1, 40, 2)} cm2", f"{n(1, 20)} mm",
            f"{n(1, 10)} cm", f"x{x(0.5, 4)}", f"{n(0, 31)}", f"1:{n(1, 4)}",
            str(r.choice(["AX", "COR", "SAG", "T1", "T2", "FLAIR", "DWI", "ADC", "STIR", "PD", "HFS", "FFS", "LONG",
                          "TRANS", "LT", "RT", "LEFT", "RIGHT", "CF", "PW", "M-MODE", "3D", "THI", "Gen", "Pen", "Res",
                          "ABDOMEN", "PELVIS", "KIDNEY", "LIVER", "THYROID", "BREAST", "LYMPH NODE", "CAROTID", "OB",
                          "STANDING", "GRID", "A", "P", "H", "F", "S", "I", "STND", "BONE", "LUNG", "SOFT TISSUE",
                          "INSPIRATION", "EXPIRATION", "WEIGHT BEARING", "DECUBITUS", "OBLIQUE", "AXIAL", "SCOUT"])),
        ]))


_INK_COLOURS = [(255, 255, 0), (0, 255, 0), (0, 255, 255), (255, 165, 0), (255, 255, 255), (180, 220, 255),
                (255, 80, 80)]


def ultrasound_background(rng: np.random.Generator, size: tuple[int, int] | None = None) -> np.ndarray:
    """A synthetic ultrasound frame: black screen, a speckled fan (sector) or linear field of view,
    dark cyst-like blobs, depth ticks; text is drawn on it later like on any background."""
    H, W = size or (int(rng.integers(360, 900)), int(rng.integers(480, 1200)))
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    speckle = rng.rayleigh(1.0, (H // 2 + 1, W // 2 + 1)).astype(np.float32)
    speckle = np.asarray(Image.fromarray(speckle / speckle.max() * 255).resize((W, H), Image.Resampling.BILINEAR), np.float32)
    depth = yy / H
    tissue = speckle * (0.35 + 0.5 * np.exp(-2.5 * depth)) * rng.uniform(0.6, 1.0)
    for _ in range(int(rng.integers(0, 4))):  # cysts / vessels
        cy, cx, r = rng.uniform(0.3, 0.9) * H, rng.uniform(0.2, 0.8) * W, rng.uniform(0.03, 0.12) * H
        tissue *= np.clip(np.hypot((yy - cy) / r, (xx - cx) / (r * rng.uniform(0.8, 2.0))), 0.15, 1.0) ** 0.5
    top = int(rng.uniform(0.06, 0.15) * H)
    if rng.random() < 0.65:  # sector probe
        ax, ay = W / 2 + rng.uniform(-0.1, 0.1) * W, top - rng.uniform(0.0, 0.1) * H
        ang = np.degrees(np.arctan2(xx - ax, yy - ay))
        rad = np.hypot(xx - ax, yy - ay)
        half = rng.uniform(30, 45)
        fov = (np.abs(ang) < half) & (rad > top - ay) & (rad < H * rng.uniform(0.85, 0.98) - ay)
    else:  # linear probe
        x0, x1 = int(rng.uniform(0.15, 0.3) * W), int(rng.uniform(0.7, 0.85) * W)
        fov = (xx >= x0) & (xx < x1) & (yy >= top) & (yy < H * rng.uniform(0.85, 0.97))
    img = np.where(fov, tissue, 0.0)
    for k in range(1, 10):  # depth ticks along the field's right edge
        y = int(top + k * (H - top) / 10)
        if y < H - 2:
            img[y:y + 2, int(W * 0.88):int(W * 0.895)] = 200
    for _ in range(int(rng.integers(0, 3))):  # calipers and scale bars: marks, not text
        y, x = int(rng.uniform(0.2, 0.95) * H), int(rng.uniform(0.05, 0.7) * W)
        img[y:y + 2, x:x + int(rng.uniform(0.1, 0.3) * W)] = 230
        img[y - 4:y + 6, x:x + 2] = 230
    out = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:  # a colour-flow (Doppler) box: red/orange/yellow or blue blobs inside a thin white frame
        rgb = np.repeat(out[..., None], 3, axis=2).astype(np.float32)
        y0, x0 = int(rng.uniform(0.2, 0.5) * H), int(rng.uniform(0.1, 0.4) * W)
        y1, x1 = min(H - 2, y0 + int(rng.uniform(0.2, 0.4) * H)), min(W - 2, x0 + int(rng.uniform(0.25, 0.5) * W))
        flow = rng.random((y1 - y0, x1 - x0)).astype(np.float32)
        flow = np.asarray(Image.fromarray((flow * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(3)), np.float32) / 255
        blob = flow > np.quantile(flow, rng.uniform(0.6, 0.85))
        hot = np.stack([np.full_like(flow, 255), 80 + 175 * flow, 40 * flow], -1) if rng.random() < 0.7 else \
            np.stack([40 * flow, 80 + 100 * flow, np.full_like(flow, 255)], -1)
        region = rgb[y0:y1, x0:x1]
        region[blob] = hot[blob]
        rgb[[y0, y1 - 1], x0:x1] = 220
        rgb[y0:y1, [x0, x1 - 1]] = 220
        out = rgb.clip(0, 255).astype(np.uint8)
    return out


@dataclass
class Sample:
    image: np.ndarray  # uint8, HxW or HxWx3
    boxes: list[tuple[int, int, int, int, int]]  # (cls, x0, y0, x1, y1)
    ink: np.ndarray | None = None  # bool HxW: the text's own pixels (evaluation measures their cover)


def _to_uint8_window(arr16: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(arr16, [0.5, 99.5])
    return ((arr16.astype(np.float32) - lo) / max(hi - lo, 1) * 255).clip(0, 255).astype(np.uint8)


def render(background: np.ndarray, rng: np.random.Generator, texts: TextFactory, fonts: list[Path],
           long_side: int | None = None, text_height: tuple[int, int] | None = None, rich: bool = False) -> Sample:
    """Draw text blocks on a background resized so its long side is `long_side` pixels. `rich`
    (training) adds more annotation text, with varied values, alone and in parameter columns, and
    more stand-alone tags; without it the draws (and so the evaluation sets) are unchanged."""
    bg = Image.fromarray(background)
    if long_side:
        scale = long_side / max(bg.size)
        bg = bg.resize((max(16, int(bg.width * scale)), max(16, int(bg.height * scale))), Image.Resampling.BILINEAR)
    # colour: scanners (ultrasound above all) often draw text in yellow, green, cyan or orange
    rgb = (bg.mode == "RGB" and rng.random() < 0.5) or rng.random() < 0.25
    bg = bg.convert("RGB" if rgb else "L")
    W, H = bg.size
    deep = (not rgb) and rng.random() < 0.35  # 12/16-bit path: text at max value, windowed to 8 bits
    maxv = 4095 if rng.random() < 0.6 else 65535
    canvas = np.asarray(bg).astype(np.float32) * (maxv / 255.0 if deep else 1.0)
    layer = Image.new("L", (W, H), 0)  # text mask
    draw_mask = ImageDraw.Draw(layer)
    if rng.random() < 0.3:
        draw_mask.fontmode = "1"  # no anti-aliasing: the jagged bitmap look of many scanners' fonts
    boxes: list[tuple[int, int, int, int, int]] = []
    backing = Image.new("L", (W, H), 0)
    draw_back = ImageDraw.Draw(backing)
    font_path = fonts[int(rng.integers(0, len(fonts)))]
    occupied: list[tuple[int, int, int, int]] = []
    dark_text = rng.random() < 0.15  # dark ink always sits on a light backing box, as scanners draw it

    def place_block(lines: list[tuple[str, int]], corner: str) -> None:
        h = int(rng.integers(*text_height)) if text_height else int(max(7, rng.uniform(0.01, 0.05) * H))
        font = ImageFont.truetype(str(font_path), h)
        margin = int(rng.uniform(0.005, 0.03) * W) + 2
        widths = [int(draw_mask.textlength(t, font=font)) for t, _ in lines]
        line_h = int(h * rng.uniform(1.1, 1.5))
        block_w, block_h = max(widths), line_h * len(lines)
        if block_w >= W - 2 * margin or block_h >= H - 2 * margin:
            return
        x = margin if "l" in corner else W - margin - block_w
        y = margin if "t" in corner else H - margin - block_h
        if corner == "c":
            x, y = int(rng.integers(margin, W - block_w - margin)), int(rng.integers(margin, H - block_h - margin))
        rect = (x, y, x + block_w, y + block_h)
        if any(not (rect[2] < o[0] or rect[0] > o[2] or rect[3] < o[1] or rect[1] > o[3]) for o in occupied):
            return
        occupied.append(rect)
        if dark_text or rng.random() < 0.3:
            pad = max(2, h // 4)
            draw_back.rectangle((x - pad, y - pad, x + block_w + pad, y + block_h + pad), fill=255)
        for n, ((text, cls), w) in enumerate(zip(lines, widths)):
            tx = x if "l" in corner or corner == "c" else x + block_w - w
            ty = y + n * line_h
            draw_mask.text((tx, ty), text, font=font, fill=255)
            bx0, by0, bx1, by1 = draw_mask.textbbox((tx, ty), text, font=font)
            pad = max(1, h // 8)
            boxes.append((cls, max(0, bx0 - pad), max(0, by0 - pad), min(W, bx1 + pad), min(H, by1 + pad)))

    corners = ["tl", "tr", "bl", "br"]
    rng.shuffle(corners)
    for corner in corners[: int(rng.integers(1, 4))]:
        n = int(rng.integers(1, 5))
        place_block([(texts.phi(), 0) for _ in range(n)], corner)
    for _ in range(int(rng.integers(0, 3))):  # short tags on their own: [M], F/39, 45y, a date
        place_block([(texts.tag(), 0)], str(rng.choice(["tl", "tr", "bl", "br", "c"])))
    if rng.random() < 0.35:  # a banner: several fields on one line along an edge
        place_block([("   ".join(texts.phi() for _ in range(int(rng.integers(2, 4)))), 0)], str(rng.choice(["tl", "bl"])))
    for _ in range(int(rng.integers(0, 4))):
        place_block([(texts.annotation(), 1)], str(rng.choice(["tl", "tr", "bl", "br", "c"])))
    if rich:
        for _ in range(int(rng.integers(1, 5))):
            place_block([(texts.annotation_varied(), 1)], str(rng.choice(["tl", "tr", "bl", "br", "c"])))
        if rng.random() < 0.4:  # a column of scanner parameters (Gen / C5-1 / 28Hz / 11cm): not PHI
            place_block([(texts.annotation_varied(), 1) for _ in range(int(rng.integers(2, 6)))],
                        str(rng.choice(["tl", "tr", "bl", "br", "c"])))
        if rng.random() < 0.25:  # a block mixing both, as many scanners print them
            place_block([(texts.phi(), 0) if rng.random() < 0.5 else (texts.annotation_varied(), 1)
                         for _ in range(int(rng.integers(2, 5)))], str(rng.choice(["tl", "tr", "bl", "br"])))
        for _ in range(int(rng.integers(0, 3))):
            place_block([(texts.tag(), 0)], str(rng.choice(["tl", "tr", "bl", "br", "c"])))

    mask = np.asarray(layer).astype(np.float32) / 255.0
    back = np.asarray(backing).astype(np.float32) / 255.0
    top = maxv if deep else 255.0
    level = top * (1.0 if rng.random() < 0.6 else rng.uniform(0.6, 0.95))
    if canvas.ndim == 3:
        mask, back = mask[..., None], back[..., None]
    base = canvas * (1 - back) + back * (top * 0.9 if dark_text else rng.uniform(0, 0.15) * top)
    ink = (top * 0.05) if dark_text else level
    if canvas.ndim == 3 and not dark_text and rng.random() < 0.6:
        ink = np.asarray(_INK_COLOURS[int(rng.integers(0, len(_INK_COLOURS)))], np.float32) * (level / 255.0)
    out = base * (1 - mask) + mask * ink
    if deep:
        img8 = _to_uint8_window(out)
    else:
        img8 = out.clip(0, 255).astype(np.uint8)
    im = Image.fromarray(img8)
    if rng.random() < 0.3:
        im = im.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 0.9))))
    arr = np.asarray(im).astype(np.float32)
    if rng.random() < 0.4:
        arr = arr + rng.normal(0, rng.uniform(1, 8), arr.shape)
    img8 = arr.clip(0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        buf = io.BytesIO()
        Image.fromarray(img8).save(buf, "JPEG", quality=int(rng.integers(40, 95)))
        img8 = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    return Sample(img8, boxes, np.asarray(layer) > 96)


def crop_tile(sample: Sample, rng: np.random.Generator, tile: int, keep_pieces: bool = False) -> Sample:
    """A tile x tile view: a crop around a text box at native scale, or the whole image scaled
    down; boxes less than half inside are dropped, the rest clipped. With `keep_pieces`, a line the
    crop cuts keeps its visible piece labelled when it is at least one line height long and most of
    its height is inside (inference tiles cut lines the same way, and merges the pieces)."""
    img = sample.image
    H, W = img.shape[:2]
    if max(H, W) <= tile or rng.random() < 0.35 or not sample.boxes:
        scale = min(1.0, tile / max(H, W))
        im = Image.fromarray(img).resize((max(1, int(W * scale)), max(1, int(H * scale))), Image.Resampling.BILINEAR)
        boxes = [(c, int(x0 * scale), int(y0 * scale), int(np.ceil(x1 * scale)), int(np.ceil(y1 * scale)))
                 for c, x0, y0, x1, y1 in sample.boxes]
        return Sample(np.asarray(im), [b for b in boxes if b[3] - b[1] >= 3 and b[4] - b[2] >= 3])
    c, x0, y0, x1, y1 = sample.boxes[int(rng.integers(0, len(sample.boxes)))]
    cx = int(np.clip(rng.integers(x1 - tile, x0 + 1) if x1 - x0 < tile else x0 - 8, 0, max(0, W - tile)))
    cy = int(np.clip(rng.integers(y1 - tile, y0 + 1) if y1 - y0 < tile else y0 - 8, 0, max(0, H - tile)))
    crop = img[cy:cy + tile, cx:cx + tile]
    out = []
    for c, a0, b0, a1, b1 in sample.boxes:
        area = (a1 - a0) * (b1 - b0)
        k0, l0, k1, l1 = max(a0, cx), max(b0, cy), min(a1, cx + tile), min(b1, cy + tile)
        if k1 <= k0 or l1 <= l0:
            continue
        if keep_pieces:
            if (l1 - l0) < 0.7 * (b1 - b0) or (k1 - k0) < (b1 - b0):
                continue
        elif (k1 - k0) * (l1 - l0) < 0.5 * area:
            continue
        out.append((c, k0 - cx, l0 - cy, k1 - cx, l1 - cy))
    return Sample(np.ascontiguousarray(crop), out)


def yolo_label(sample: Sample) -> str:
    H, W = sample.image.shape[:2]
    rows = []
    for c, x0, y0, x1, y1 in sample.boxes:
        rows.append(f"{c} {(x0 + x1) / 2 / W:.6f} {(y0 + y1) / 2 / H:.6f} {(x1 - x0) / W:.6f} {(y1 - y0) / H:.6f}")
    return "\n".join(rows) + ("\n" if rows else "")
