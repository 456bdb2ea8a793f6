"""Backgrounds and synthetic sets for the detector (training and evaluation scripts only)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image

from core.imaging.decode import decode_image
from core.imaging.display import to_display_uint8
from core.ml.synth import Sample, TextFactory, crop_tile, font_paths, render, ultrasound_background, yolo_label

CLEAN_MODALITIES = {"CT", "MR", "CR", "DX", "NM", "XA", "MG", "PT", "RF", "RTDOSE"}


# These X-rays carry their own burned-in text near the edges: laterality ("R", "L"), "PA"/"AP" tags,
# "PA ERECT" boxes and a column of technique text (Montgomery), times and "KV60" (Kermany). Unlabelled,
# it would teach the model that real text is background and count real text as false positives in
# the evaluation, so only the inner part of each image is used: (top, bottom, left, right) fractions.
LUNG_TEXT_FREE = (0.16, 0.97, 0.08, 0.90)
KERMANY_TEXT_FREE = (0.10, 0.90, 0.13, 0.87)


def _inner(img: np.ndarray, frac: tuple[float, float, float, float]) -> np.ndarray:
    h, w = img.shape[:2]
    t, b, l, r = frac
    return np.ascontiguousarray(img[int(t * h):int(b * h), int(l * w):int(r * w)])


def backgrounds(data_root: Path, split: str, limit: int, seed: int) -> list[np.ndarray]:
    """Real images without burned-in text: lung-segmentation X-rays and the chest X-ray set's train
    or test split (their inner parts, see LUNG_TEXT_FREE), and every decodable frame of the
    clean-modality DICOM samples."""
    rnd = random.Random(seed)
    out: list[np.ndarray] = []
    lung = sorted((data_root / "cxr-lung-seg" / "images").glob("*.jpg"))
    rnd.shuffle(lung)
    half = len(lung) // 2
    lung = lung[:half] if split == "train" else lung[half:]
    kermany = sorted((data_root / "kermany-cxr-224" / "dataset" / ("train" if split == "train" else "test")).glob("*/*.jp*g"))
    rnd.shuffle(kermany)
    for p in lung[: limit // 2]:
        out.append(_inner(np.asarray(Image.open(p).convert("L")), LUNG_TEXT_FREE))
    for p in kermany[: limit // 4]:
        out.append(_inner(np.asarray(Image.open(p).convert("L")), KERMANY_TEXT_FREE))
    dcm = sorted((data_root / "dicom-samples").rglob("*.dcm"))
    for p in dcm:
        try:
            img = decode_image(p.read_bytes())
        except Exception:
            continue
        if img.modality not in CLEAN_MODALITIES or min(img.rows, img.cols) < 64:
            continue
        for f in range(min(img.frames, 3)):
            out.append(to_display_uint8(img.pixels, photometric=img.photometric, frames=img.frames, frame=f))
    rnd.shuffle(out)
    out = out[:limit]
    # ultrasound-like frames: dark screens with a speckled field, where scanners put most text
    rng = np.random.default_rng(seed + 100)
    out += [ultrasound_background(rng) for _ in range(max(1, limit // 5))]
    rnd.shuffle(out)
    return out


def write_yolo_split(root: Path, split: str, bgs: list[np.ndarray], n: int, seed: int, fonts: list[str],
                     tile: int, rich: bool = True) -> None:
    """`n` training tiles. `rich` (the default): more and more varied annotation text, and cut lines
    keep their labelled pieces (see synth.render and crop_tile)."""
    rng = np.random.default_rng(seed)
    texts = TextFactory(seed)
    fp = font_paths(fonts)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        bg = bgs[int(rng.integers(0, len(bgs)))]
        if rng.random() < 0.1:  # some images carry no text at all
            long_side = int(rng.integers(300, 1600))
            s = Sample(np.asarray(Image.fromarray(bg).resize((long_side, long_side))), [])
        else:
            s = render(bg, rng, texts, fp, long_side=int(rng.integers(256, 1800)), rich=rich)
        t = crop_tile(s, rng, tile, keep_pieces=rich)
        Image.fromarray(t.image).save(root / "images" / split / f"{i:05d}.png")
        (root / "labels" / split / f"{i:05d}.txt").write_text(yolo_label(t))


def full_images(bgs: list[np.ndarray], n: int, seed: int, fonts: list[str], large: bool = False) -> list[Sample]:
    """Whole images for evaluation; `large` = 2000-3000 px with text 18-20 px high."""
    rng = np.random.default_rng(seed)
    texts = TextFactory(seed)
    fp = font_paths(fonts)
    out = []
    for _ in range(n):
        bg = bgs[int(rng.integers(0, len(bgs)))]
        if large:
            out.append(render(bg, rng, texts, fp, long_side=int(rng.integers(2000, 3001)), text_height=(18, 21)))
        else:
            out.append(render(bg, rng, texts, fp, long_side=int(rng.integers(300, 1800))))
    return out
