"""An evaluation set of burned-in text on real anatomy, drawn the ways scanners draw it, kept apart from
everything that trained or tuned the detectors.

What varies: fonts (none of them used to train the YOLO or the verifier), text height 8-40 px, contrast
(bright scanner text; *faint* grey text a few levels above the bright bone under it; *inverse* dark text
on a light box; text on a *banner* bar across the image), rendering (anti-aliased, jagged bitmap, pixel-
doubled CRT fonts), layouts (corner blocks mixing PHI and technique, banners of several fields,
ultrasound parameter columns, stand-alone tags, centre labels), colour ink on RGB frames, blur, noise and
JPEG artefacts. Each line keeps its text, class (phi / annotation), box and ink pixels.

Backgrounds: the held-out half of the lung X-rays, the chest X-ray test split, the DICOM samples and
synthetic ultrasound frames (scripts/detector_data.backgrounds(split="val")). Seeds: 7 (300-1800 px)
and 8 (2000-3000 px) for the held-out set; any other seed, with TUNE_FONTS, for development.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from core.ml.synth import TRAIN_FONTS, TextFactory, font_paths

EVAL_FONTS = ["freefont/FreeSans.ttf", "freefont/FreeMono.ttf", "freefont/FreeMonoBold.ttf", "freefont/FreeSansBold.ttf",
              "freefont/FreeSerif.ttf", "liberation/LiberationSerif-Regular.ttf",
              "liberation/LiberationSansNarrow-Regular.ttf", "liberation/LiberationMono-Bold.ttf",
              "dejavu/DejaVuSerif.ttf", "dejavu/DejaVuSansMono-Bold.ttf", "dejavu/DejaVuSerifCondensed-Bold.ttf"]
TUNE_FONTS = TRAIN_FONTS
# a second development set: slanted faces of the families, none in EVAL_FONTS or the training fonts
TUNE_FONTS_2 = ["freefont/FreeMonoOblique.ttf", "freefont/FreeSerifItalic.ttf", "liberation/LiberationSerif-Italic.ttf",
                "dejavu/DejaVuSansMono-Oblique.ttf", "liberation/LiberationMono-Italic.ttf", "freefont/FreeSansOblique.ttf"]
HELDOUT_SEEDS = {"small": 7, "large": 8}
INK = [(255, 255, 255), (255, 255, 0), (0, 255, 0), (0, 255, 255), (255, 165, 0), (200, 220, 255)]


@dataclass
class Line:
    text: str
    cls: str  # "phi" or "annotation"
    box: tuple[int, int, int, int]
    ink: np.ndarray  # bool mask, same size as the image (only set inside the box)


@dataclass
class EvalImage:
    image: np.ndarray  # uint8 H x W or H x W x 3
    lines: list[Line]
    style: dict


class _Painter:
    def __init__(self, base: np.ndarray, rng: np.random.Generator, fonts, texts: TextFactory, h_range):
        self.rng, self.fonts, self.texts, self.h_range = rng, fonts, texts, h_range
        self.img = base.astype(np.float32)
        self.H, self.W = base.shape[:2]
        self.rgb = base.ndim == 3
        self.lines: list[Line] = []
        self.occupied: list[tuple[int, int, int, int]] = []

    def _free(self, rect) -> bool:
        x0, y0, x1, y1 = rect
        if x0 < 0 or y0 < 0 or x1 > self.W or y1 > self.H:
            return False
        return all(x1 < o[0] or x0 > o[2] or y1 < o[1] or y0 > o[3] for o in self.occupied)

    def _render_mask(self, text: str, font_path, h: int, mode: str) -> np.ndarray:
        """The ink of one line as a float mask (0..1), tight around its text box plus a margin."""
        if mode == "doubled":  # a low-resolution bitmap font, pixels doubled: CRT-era scanners
            small = self._render_mask(text, font_path, max(6, h // 2), "bitmap")
            return np.kron(small, np.ones((2, 2), np.float32))
        font = ImageFont.truetype(str(font_path), h)
        probe = ImageDraw.Draw(Image.new("L", (1, 1)))
        x0, y0, x1, y1 = probe.textbbox((0, 0), text, font=font)
        im = Image.new("L", (x1 - x0 + 4, y1 - y0 + 4), 0)
        d = ImageDraw.Draw(im)
        if mode == "bitmap":
            d.fontmode = "1"
        d.text((2 - x0, 2 - y0), text, font=font, fill=255)
        return np.asarray(im, np.float32) / 255.0

    def block(self, lines: list[tuple[str, str]], where: str, style: str, h: int | None = None) -> None:
        rng = self.rng
        h = h or int(rng.integers(*self.h_range))
        font = self.fonts[int(rng.integers(0, len(self.fonts)))]
        mode = str(rng.choice(["aa", "aa", "bitmap", "doubled"])) if h >= 12 else str(rng.choice(["aa", "bitmap"]))
        masks = [self._render_mask(t, font, h, mode) for t, _ in lines]
        gap = int(h * rng.uniform(0.25, 0.6))
        bw = max(m.shape[1] for m in masks)
        bh = sum(m.shape[0] for m in masks) + gap * (len(masks) - 1)
        margin = int(rng.uniform(0.005, 0.03) * self.W) + 3
        if where == "c":
            x = int(rng.integers(margin, max(margin + 1, self.W - bw - margin)))
            y = int(rng.integers(margin, max(margin + 1, self.H - bh - margin)))
        else:
            x = margin if "l" in where else self.W - margin - bw
            y = margin if "t" in where else self.H - margin - bh
        pad = max(2, h // 3)
        rect = (x - pad, y - pad, x + bw + pad, y + bh + pad)
        if not self._free(rect):
            return
        self.occupied.append(rect)
        region = self.img[rect[1]:rect[3], rect[0]:rect[2]]
        grey = region.max(axis=2) if self.rgb else region
        ink_level, colour = 255.0, None
        if style == "faint":  # grey text a few levels above the brightest background under it
            top = float(np.percentile(grey, 99))
            delta = float(rng.uniform(12, 36))
            if top + delta > 255:
                style = "inverse"
            else:
                ink_level = top + delta
        if style in ("inverse", "banner"):
            if style == "inverse":
                back, ink_level = float(rng.uniform(190, 250)), float(rng.uniform(0, 50))
            else:
                back = float(rng.uniform(30, 210))
                ink_level = float(np.clip(back + (1 if back < 120 else -1) * rng.uniform(70, 160), 0, 255))
            region[...] = back
        elif style == "bright":
            ink_level = float(rng.uniform(200, 255))
            if self.rgb and rng.random() < 0.6:
                colour = np.asarray(INK[int(rng.integers(0, len(INK)))], np.float32) * (ink_level / 255.0)
        cy = y
        for (text, cls), m in zip(lines, masks):
            lx = x if ("l" in where or where == "c") else x + bw - m.shape[1]
            hh, ww = m.shape
            sub = self.img[cy:cy + hh, lx:lx + ww]
            mm = m[..., None] if self.rgb else m
            target = colour if colour is not None else ink_level
            sub[...] = sub * (1 - mm) + mm * target
            ink = np.zeros((self.H, self.W), bool)
            ink[cy:cy + hh, lx:lx + ww] = m > 0.4
            ys, xs = np.nonzero(m > 0.2)
            if len(ys):
                p = max(1, h // 8)
                box = (max(0, lx + int(xs.min()) - p), max(0, cy + int(ys.min()) - p),
                       min(self.W, lx + int(xs.max()) + 1 + p), min(self.H, cy + int(ys.max()) + 1 + p))
                self.lines.append(Line(text, cls, box, ink))
            cy += hh + gap


def draw(background: np.ndarray, rng: np.random.Generator, texts: TextFactory, fonts, long_side: int,
         h_range: tuple[int, int]) -> EvalImage:
    bg = Image.fromarray(background)
    scale = long_side / max(bg.size)
    bg = bg.resize((max(32, int(bg.width * scale)), max(32, int(bg.height * scale))), Image.Resampling.BILINEAR)
    rgb = bg.mode == "RGB" or rng.random() < 0.25
    base = np.asarray(bg.convert("RGB" if rgb else "L"))
    p = _Painter(base, rng, fonts, texts, h_range)
    styles = ["bright", "bright", "faint", "inverse", "banner"]
    corners = ["tl", "tr", "bl", "br"]
    rng.shuffle(corners)
    for corner in corners[:int(rng.integers(1, 5))]:  # corner blocks: PHI with a little technique mixed in
        lines = [(texts.phi(), "phi") if rng.random() < 0.75 else (texts.annotation_varied(), "annotation")
                 for _ in range(int(rng.integers(1, 5)))]
        p.block(lines, corner, str(rng.choice(styles)))
    if rng.random() < 0.4:  # a banner of several fields along the top or bottom edge
        fields = "   ".join(texts.phi() for _ in range(int(rng.integers(2, 4))))
        p.block([(fields, "phi")], str(rng.choice(["tl", "bl"])), "banner")
    if rng.random() < 0.5:  # an ultrasound-style parameter column
        p.block([(texts.annotation_varied(), "annotation") for _ in range(int(rng.integers(2, 6)))],
                str(rng.choice(["tl", "tr", "bl", "br"])), "bright")
    for _ in range(int(rng.integers(0, 3))):  # stand-alone tags: age/sex, a date, initials
        p.block([(texts.tag(), "phi")], str(rng.choice(["tl", "tr", "bl", "br", "c"])), str(rng.choice(styles)))
    for _ in range(int(rng.integers(0, 3))):  # centre and edge labels: views, markers, body parts
        p.block([(texts.annotation(), "annotation")], str(rng.choice(["c", "tr", "bl"])), "bright")
    img = p.img.clip(0, 255)
    style = {"rgb": rgb}
    im = Image.fromarray(img.astype(np.uint8))
    if rng.random() < 0.25:
        im = im.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 0.8))))
        style["blur"] = True
    arr = np.asarray(im).astype(np.float32)
    if rng.random() < 0.4:
        arr = arr + rng.normal(0, rng.uniform(1, 6), arr.shape)
        style["noise"] = True
    out = arr.clip(0, 255).astype(np.uint8)
    if rng.random() < 0.35:
        q = int(rng.integers(30, 91))
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, "JPEG", quality=q)
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
        style["jpeg"] = q
    return EvalImage(out, p.lines, style)


def build(backgrounds: list[np.ndarray], n: int, band: str, seed: int | None = None,
          fonts: list[str] | None = None) -> list[EvalImage]:
    """`n` images of one size band: "small" (300-1800 px, text 8-40 px, at most a tenth of the image
    height) or "large" (2000-3000 px, text 14-40 px)."""
    seed = HELDOUT_SEEDS[band] if seed is None else seed
    rng = np.random.default_rng(seed)
    texts = TextFactory(seed + 1000)
    fp = font_paths(fonts or EVAL_FONTS)
    out = []
    for _ in range(n):
        bg = backgrounds[int(rng.integers(0, len(backgrounds)))]
        if band == "large":
            long_side, hr = int(rng.integers(2000, 3001)), (14, 41)
        else:
            long_side = int(rng.integers(300, 1801))
            hr = (8, int(np.clip(long_side * 0.035, 12, 41)))
        out.append(draw(bg, rng, texts, fp, long_side, hr))
    return out
