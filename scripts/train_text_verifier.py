"""Train the text-line verifier (core/ml/textverify.py) and ship it under models/verifier/.

Its data: synthetic images drawn like the detector's (training fonts and backgrounds only, other
seeds), each line's crop with jittered box edges and cut pieces, random text-free boxes, and the
shipped detector's own boxes on those images at a low confidence (labelled by the drawn text's
pixels they hold: PHI, annotation, or none), so it learns the detector's box shapes and phantoms.

    .venv/bin/python scripts/train_text_verifier.py [--n-images 900] [--epochs 12]

The shipped run: 12 min drawing 900 images and running the detector over them, 41 min training 12
epochs on 2 CPU cores that other jobs shared (a rerun reuses the drawn crops from data/verifier/).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.hashing import file_sha256  # noqa: E402
from core.ml import detector, textverify  # noqa: E402
from core.ml.synth import Sample, TextFactory, TRAIN_FONTS, font_paths, render  # noqa: E402
from scripts.detector_data import backgrounds  # noqa: E402

OUT = ROOT / "models" / "verifier"
WORK = ROOT / "data" / "verifier"
DATA_VERSION = 2  # bump when the crops or their labels are drawn differently


def label_of(box: tuple[int, int, int, int], s: Sample) -> int | None:
    """0 phi when the box holds at least 30% of some PHI line's text pixels, else 1 annotation when it
    holds 30% of an annotation line's, else 2 none when it holds (almost) no text pixels at all; None
    (not used) for a box holding only scraps of text."""
    x0, y0, x1, y1 = box
    best = [0.0, 0.0]
    for c, a0, b0, a1, b1 in s.boxes:
        ink = s.ink[b0:b1, a0:a1]
        n = int(ink.sum())
        k0, l0, k1, l1 = max(a0, x0), max(b0, y0), min(a1, x1), min(b1, y1)
        if n == 0 or k1 <= k0 or l1 <= l0:
            continue
        best[c] = max(best[c], int(s.ink[l0:l1, k0:k1].sum()) / n)
    if best[0] >= 0.3:
        return 0
    if best[1] >= 0.3:
        return 1
    inside = int(s.ink[max(0, y0):y1, max(0, x0):x1].sum())
    return 2 if inside <= max(2, 0.002 * (x1 - x0) * (y1 - y0)) else None


def jitter(rng: np.random.Generator, box: tuple[int, int, int, int], h: int, w: int) -> tuple[int, int, int, int]:
    """A drawn line's box as a detector might draw it: edges off by a little, sometimes only a piece."""
    x0, y0, x1, y1 = box
    bh = y1 - y0
    if rng.random() < 0.2 and x1 - x0 > 3 * bh:  # a piece of the line (a tile cut it, or half was missed)
        keep = rng.uniform(0.4, 0.9) * (x1 - x0)
        if rng.random() < 0.5:
            x1 = int(x0 + keep)
        else:
            x0 = int(x1 - keep)
    x0 += int(rng.uniform(-0.5, 0.3) * bh)
    x1 += int(rng.uniform(-0.3, 0.5) * bh)
    y0 += int(rng.uniform(-0.15, 0.1) * bh)
    y1 += int(rng.uniform(-0.1, 0.15) * bh)
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(w, max(x0 + 2, x1)), min(h, max(y0 + 2, y1))
    return x0, y0, x1, y1


def build_set(bgs, n: int, seed: int, model, conf: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops (n, H, W) float16, labels, and the index of the image each came from."""
    rng = np.random.default_rng(seed)
    texts = TextFactory(seed)
    fonts = font_paths(TRAIN_FONTS)
    xs, ys, gs = [], [], []
    for i in range(n):
        bg = bgs[int(rng.integers(0, len(bgs)))]
        large = rng.random() < 0.1
        s = render(bg, rng, texts, fonts, long_side=int(rng.integers(2000, 3001) if large else rng.integers(300, 1800)),
                   text_height=(18, 21) if large else None, rich=bool(rng.random() < 0.6))
        h, w = s.image.shape[:2]
        boxes: list[tuple[tuple[int, int, int, int], int]] = []
        for c, *g in s.boxes:
            for _ in range(2):
                boxes.append((jitter(rng, tuple(g), h, w), c))
        for _ in range(6):  # text-free boxes of a line's shape
            bh = int(max(7, rng.uniform(0.01, 0.05) * h))
            bw = int(bh * rng.uniform(0.8, 12))
            if bw < w and bh < h:
                x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                b = (x0, y0, x0 + bw, y0 + bh)
                if label_of(b, s) == 2:
                    boxes.append((b, 2))
        for d in detector.combine(detector.run_passes(model, s.image, conf=conf), h, w, conf=conf):
            b = (d.box.x0, d.box.y0, d.box.x1, d.box.y1)
            lab = label_of(b, s)
            if lab is not None:
                boxes.append((b, lab))
        for b, lab in boxes:
            xs.append(textverify.crop(s.image, *b).astype(np.float16))
            ys.append(lab)
            gs.append(i)
        if (i + 1) % 100 == 0:
            print(f"  {i + 1}/{n} images, {len(ys)} crops", flush=True)
    return np.stack(xs), np.asarray(ys, np.int64), np.asarray(gs, np.int64)


def train(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, epochs: int, seed: int) -> tuple[object, dict]:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    dev = textverify.device()
    model = textverify.build().to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * ((len(y) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    counts = np.bincount(y, minlength=len(textverify.LABELS)).astype(np.float64)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)),
                                                      dtype=torch.float32, device=dev))
    xt, yt = torch.from_numpy(x.astype(np.float32))[:, None], torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(yt), generator=gen)
        total = 0.0
        for k in range(0, len(perm), 128):
            idx = perm[k:k + 128]
            xb = xt[idx]
            xb = xb + torch.randn(xb.shape, generator=gen) * torch.rand(len(idx), 1, 1, 1, generator=gen) * 0.08
            gain = 0.6 + 0.8 * torch.rand(len(idx), 1, 1, 1, generator=gen)  # fainter and stronger contrast
            xb, yb = (xb * gain).to(dev), yt[idx].to(dev)
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        acc = accuracy(model, xv, yv)
        history.append({"epoch": ep + 1, "loss": round(total / len(yt), 4), "val_accuracy": round(acc["accuracy"], 4)})
        print(f"  epoch {ep + 1}: loss {total / len(yt):.4f}, validation accuracy {acc['accuracy']:.4f}", flush=True)
    return model.eval(), {"history": history, "validation": accuracy(model, xv, yv)}


def accuracy(model, x: np.ndarray, y: np.ndarray) -> dict:
    import torch

    model.eval()
    dev = next(model.parameters()).device
    preds = []
    with torch.inference_mode():
        for k in range(0, len(y), 512):
            preds.append(model(torch.from_numpy(x[k:k + 512].astype(np.float32))[:, None].to(dev)).argmax(1).cpu().numpy())
    p = np.concatenate(preds) if preds else np.zeros(0, int)
    conf = np.zeros((3, 3), int)
    for t, q in zip(y, p):
        conf[t, q] += 1
    return {"accuracy": float((p == y).mean()) if len(y) else 0.0,
            "confusion_rows_true_cols_pred": conf.tolist(), "labels": list(textverify.LABELS)}


def write_card(out: Path, info: dict) -> None:
    v = info["validation"]
    rows = "\n".join(f"| {t} | " + " | ".join(str(n) for n in row) + " |"
                     for t, row in zip(v["labels"], v["confusion_rows_true_cols_pred"]))
    (out / "MODEL_CARD.md").write_text(f"""# MedShield text-line verifier

A small CNN (4 conv blocks and a linear head; about 160k parameters) that takes a second look at
each line the sensitive-text detector found, on the line's own crop at native resolution
(24 px high, up to 256 px long, text made bright, contrast stretched): `phi`, `annotation`
(identifies nobody) or `none` (no text: a phantom). Code: `core/ml/textverify.py`; the pipeline
(`core/ml/detector.py`) applies it with a policy that only takes a line away from PHI when it is
very sure (see the detector's card for the thresholds and the figures with it).

- Weights: `medshield-text-verifier.pt` (PyTorch state dict, loaded with `weights_only=True`)
- Command: `{info['command'].strip()}` on {info['device']}: {info['data_minutes']} min drawing
  {info['images']} images and running the shipped detector over them, {info['train_minutes']} min training
- Detector it was trained beside: sha256 `{info['detector_sha256'][:16]}...`

## Data and licences
The detector's synthetic images (training fonts, training backgrounds, other seeds: see
`models/detector/MODEL_CARD.md` for the sources and their licences). Crops: each drawn line with
jittered edges and cut pieces, text-free boxes of a line's shape, and the detector's own boxes at
confidence 0.05, labelled by the drawn text pixels they hold. {info['crops']} crops
({info['crops_per_label'][0]} phi, {info['crops_per_label'][1]} annotation, {info['crops_per_label'][2]} none).

## Validation (the last 15% of the images, never trained on)
Accuracy {v['accuracy']:.3f}. Rows: true label; columns: predicted phi / annotation / none.

| true | phi | annotation | none |
|---|---|---|---|
{rows}

## Limits
Synthetic text only, like the detector. It never sees what the detector missed.
""")


def main() -> int:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--n-images", type=int, default=900)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", default=None, help="where the weights go (models/verifier)")
    ap.add_argument("--cache", default=str(WORK), help="where the drawn crops are kept for a rerun (data/verifier)")
    args = ap.parse_args()
    out = Path(args.out) if args.out else OUT
    t0 = time.time()
    cache = Path(args.cache) / f"crops-v{DATA_VERSION}-n{args.n_images}-s{args.seed}.npz"
    if cache.exists():
        z = np.load(cache)
        x, y, g = z["x"], z["y"], z["g"]
    else:
        bgs = backgrounds(Path(args.data_root), "train", 600, args.seed)
        x, y, g = build_set(bgs, args.n_images, args.seed, detector.load())
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, x=x, y=y, g=g)
    data_min = (time.time() - t0) / 60
    val = g >= int(args.n_images * 0.85)  # the last 15% of the images validate
    print(f"{len(y)} crops ({np.bincount(y, minlength=3).tolist()} phi/annotation/none), {val.sum()} for validation, "
          f"{data_min:.1f} min", flush=True)
    t1 = time.time()
    model, info = train(x[~val], y[~val], x[val], y[val], args.epochs, args.seed)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.cpu().state_dict(), out / "medshield-text-verifier.pt")
    info.update({"command": "python scripts/train_text_verifier.py " + " ".join(sys.argv[1:]),
                 "crops": int(len(y)), "crops_per_label": np.bincount(y, minlength=3).tolist(),
                 "images": args.n_images, "seed": args.seed, "data_minutes": round(data_min, 1),
                 "train_minutes": round((time.time() - t1) / 60, 1), "device": textverify.device(),
                 "detector_sha256": file_sha256(detector.DEFAULT_WEIGHTS)})
    (out / "training.json").write_text(json.dumps(info, indent=2))
    write_card(out, info)
    print(json.dumps(info["validation"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
