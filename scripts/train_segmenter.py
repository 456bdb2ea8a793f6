"""Train a 2D lung segmenter on ../shared/data/cxr-lung-seg and report Dice and HD95 (MONAI
metrics) on a held-out split.

    .venv/bin/python scripts/train_segmenter.py [--variant residual-unet] [--montgomery-only]

Licence: the Shenzhen masks are CC BY-NC-SA 4.0, so a model trained on them inherits the
non-commercial condition; `--montgomery-only` trains on the 138 Montgomery pairs (NLM) alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.ml import segmenter  # noqa: E402

OUT = ROOT / "models" / "segmenter"


def pairs(root: Path, montgomery_only: bool) -> list[tuple[str, str]]:
    with open(root / "pairs.csv") as fh:
        rows = list(csv.DictReader(fh))
    keys = list(rows[0])
    img_k = next(k for k in keys if "image" in k.lower())
    mask_k = next(k for k in keys if "mask" in k.lower())
    out = [(str(root / r[img_k]), str(root / r[mask_k])) for r in rows]
    return [p for p in out if "MCUCXR" in p[0]] if montgomery_only else out


def loader(items, size: int, train: bool, batch: int, workers: int):
    from monai.data import DataLoader, Dataset
    from monai.transforms import (AsDiscreted, Compose, EnsureChannelFirstd, LoadImaged, RandAffined,
                                  RandScaleIntensityd, Resized, ScaleIntensityd)

    t = [LoadImaged(keys=["image", "label"], image_only=True, reader="PILReader", converter=lambda im: im.convert("L")),
         EnsureChannelFirstd(keys=["image", "label"]), ScaleIntensityd(keys=["image", "label"]),
         Resized(keys=["image", "label"], spatial_size=(size, size), mode=("bilinear", "nearest")),
         AsDiscreted(keys="label", threshold=0.5)]
    if train:
        t += [RandAffined(keys=["image", "label"], prob=0.5, rotate_range=0.1, scale_range=0.1, mode=("bilinear", "nearest")),
              RandScaleIntensityd(keys="image", factors=0.1, prob=0.5)]
    return DataLoader(Dataset([{"image": i, "label": m} for i, m in items], Compose(t)), batch_size=batch,
                      shuffle=train, num_workers=workers)


@torch.no_grad()
def evaluate(model, dl, dev) -> dict:
    from monai.metrics import DiceMetric, HausdorffDistanceMetric

    dice, hd = DiceMetric(include_background=True, reduction="mean"), HausdorffDistanceMetric(percentile=95, reduction="mean")
    model.eval()
    for b in dl:
        pred = (torch.sigmoid(model(b["image"].to(dev))) >= 0.5).float()
        y = b["label"].to(dev)
        dice(pred, y)
        hd(pred, y)
    return {"dice": float(dice.aggregate()), "hd95_px": float(hd.aggregate())}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cxr-lung-seg"))
    ap.add_argument("--variant", default="residual-unet", choices=segmenter.VARIANTS)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--montgomery-only", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    items = pairs(Path(args.data), args.montgomery_only)
    rng = np.random.default_rng(0)
    rng.shuffle(items)
    items = items[: args.limit] if args.limit else items
    n_test = max(2, len(items) // 5)
    test, train = items[:n_test], items[n_test:]
    channels = (16, 32, 64, 128, 256)
    model = segmenter.build(args.variant, channels).to(dev)
    from monai.losses import DiceCELoss

    loss_fn = DiceCELoss(sigmoid=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-5)
    tl, vl = loader(train, args.size, True, args.batch, args.workers), loader(test, args.size, False, args.batch, args.workers)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    best, best_dice, t0 = out / f"lung-{args.variant}.pt", -1.0, time.time()
    for epoch in range(args.epochs):
        model.train()
        for b in tl:
            opt.zero_grad()
            loss = loss_fn(model(b["image"].to(dev)), b["label"].to(dev))
            loss.backward()
            opt.step()
        m = evaluate(model, vl, dev)
        print(f"epoch {epoch + 1}: dice {m['dice']:.4f} hd95 {m['hd95_px']:.1f} px ({time.time() - t0:.0f} s)", flush=True)
        if m["dice"] > best_dice:
            best_dice = m["dice"]
            torch.save({"variant": args.variant, "channels": channels, "size": args.size, "state_dict": model.state_dict()}, best)
    model.load_state_dict(torch.load(best, map_location=dev, weights_only=True)["state_dict"])
    m = evaluate(model, vl, dev)
    licence = "NLM Montgomery (research use)" if args.montgomery_only else "includes Shenzhen masks: CC BY-NC-SA 4.0 (non-commercial)"
    (out / f"lung-{args.variant}.json").write_text(json.dumps({
        "test": m, "test_pairs": len(test), "train_pairs": len(train), "size": args.size, "licence": licence,
        "minutes": round((time.time() - t0) / 60, 1), "command": "python scripts/train_segmenter.py " + " ".join(sys.argv[1:])}, indent=2))
    print(f"held-out: Dice {m['dice']:.4f}, HD95 {m['hd95_px']:.1f} px at {args.size} px", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
