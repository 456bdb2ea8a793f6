"""Train a 2D lung segmenter (MONAI U-Net variants) on ../shared/data/cxr-lung-seg and report
Dice and HD95 (MONAI metrics) on a held-out test split that took no part in choosing the epoch.

    .venv/bin/python scripts/train_segmenter.py [--variant residual-unet] [--size 128] [--max-minutes 12]
    .venv/bin/python scripts/train_segmenter.py --montgomery-only      # NLM Montgomery pairs alone

Images go through the app's own preprocessing (`core.ml.classifier.preprocess`), masks are
thresholded at 128 and resized with nearest neighbour; MONAI random affine (image and mask
together) and intensity transforms augment; DiceCE loss. Split 70/10/20 (fixed seed): train,
validation (chooses the epoch), test (the figures). The test figures are also computed through
the app's path: the mask predicted at the model size, upsampled to the full image.

Licence: the Shenzhen masks are CC BY-NC-SA 4.0, so a model trained on them inherits the
non-commercial condition; `--montgomery-only` trains on the 138 Montgomery pairs (NLM) alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys

from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.ml import classifier, finetune, segmenter  # noqa: E402
from core.ml.evaluation import segmentation_metrics  # noqa: E402

OUT = ROOT / "models" / "segmenter"

def pairs(root: Path, montgomery_only: bool) -> list[tuple[str, str]]:
    with open(root / "pairs.csv") as fh:
        rows = list(csv.DictReader(fh))
    out = [(str(root / r["image"]), str(root / r["mask"])) for r in rows]
    return [p for p in out if "MCUCXR" in Path(p[0]).name] if montgomery_only else out

def load(items, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch.nn.functional as F
    from PIL import Image

    xs, ys = [], []
    for img_path, mask_path in items:
        xs.append(classifier.preprocess(np.asarray(Image.open(img_path).convert("L")), size=size)[0])
        m = torch.as_tensor(np.asarray(Image.open(mask_path).convert("L")) >= 128, dtype=torch.float32)[None, None]
        ys.append(F.interpolate(m, size=(size, size), mode="nearest")[0])
    return torch.stack(xs), torch.stack(ys)

def full_resolution_dice(model, items, size: int) -> dict:
    """Dice and HD95 at each image's own size, through core.ml.segmenter.segment."""
    from PIL import Image

    hds, dices = [], []
    for img_path, mask_path in items:
        arr = np.asarray(Image.open(img_path).convert("L"))
        truth = np.asarray(Image.open(mask_path).convert("L")) >= 128
        seg = segmenter.segment(model, classifier.preprocess(arr, size=size), truth.shape)
        m = segmentation_metrics(seg.mask[None, None], truth[None, None])
        dices.append(m["dice"])
        hds.append(m["hd95_px"])
    return {"n": len(items), "dice": float(np.mean(dices)), "hd95_px": float(np.nanmean(hds))}

def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cxr-lung-seg"))
    ap.add_argument("--variant", default="residual-unet", choices=segmenter.VARIANTS)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--montgomery-only", action="store_true")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    items = sorted(pairs(Path(args.data), args.montgomery_only))
    rng = np.random.default_rng(args.seed)
    rng.shuffle(items)
    items = items[: args.limit] if args.limit else items
    n_test, n_val = max(2, round(len(items) * 0.2)), max(2, round(len(items) * 0.1))
    test, val, train = items[:n_test], items[n_test:n_test + n_val], items[n_test + n_val:]
    xtr, ytr = load(train, args.size)
    xva, yva = load(val, args.size)
    xte, yte = load(test, args.size)
    channels = (16, 32, 64, 128, 256)
    model = segmenter.build(args.variant, channels).to(dev)
    from monai.losses import DiceCELoss

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"lung-{args.variant}" + ("-montgomery" if args.montgomery_only else "")

    def report(row: dict) -> None:
        print(f"epoch {row['epoch']}: loss {row['train_loss']:.4f} val dice {row['val_score']} ({row['minutes']:.1f} min)", flush=True)

    fitted = finetune.fit(model, xtr, ytr, DiceCELoss(sigmoid=True),
                          lambda m: segmentation_metrics(finetune.predict_masks(m, xva), yva)["dice"],
                          epochs=args.epochs, lr=args.lr, batch=args.batch, augment=finetune.segmenter_augment(args.seed),
                          weight_decay=1e-5, max_minutes=args.max_minutes, seed=args.seed, on_epoch=report)
    best_dice, history = fitted.best_score, fitted.history
    model.load_state_dict(fitted.best_state)
    weights = out / f"{stem}.pt"
    torch.save({"variant": args.variant, "channels": channels, "size": args.size,
                "state_dict": classifier.compact_state_dict(model)}, weights)
    model, size, _ = segmenter.load.__wrapped__(str(weights))  # evaluate the shipped file, as the app loads it
    m = segmentation_metrics(finetune.predict_masks(model, xte), yte)
    full = full_resolution_dice(model, test, size)
    licence = ("NLM Montgomery County set (research use; cite Jaeger et al. 2014)" if args.montgomery_only else
               "includes Shenzhen masks: CC BY-NC-SA 4.0, so these weights are for non-commercial use only")
    metrics = {"test": m, "test_full_resolution": full, "best_val_dice": best_dice, "history": history,
               "test_pairs": len(test), "val_pairs": len(val), "train_pairs": len(train), "size": args.size,
               "variant": args.variant, "licence": licence, "device": str(dev),
               "minutes": round(fitted.minutes, 1),
               "command": "python scripts/train_segmenter.py " + " ".join(sys.argv[1:])}
    (out / f"{stem}.json").write_text(json.dumps(metrics, indent=2))
    (out / f"{stem}.md").write_text(f"""# Lung segmenter `{stem}` (MONAI {args.variant})

- Weights: `{stem}.pt` (`{{variant, channels, size, state_dict}}`, float16 tensors); metrics: `{stem}.json`
- Data: `cxr-lung-seg` ({'Montgomery pairs only' if args.montgomery_only else 'Shenzhen + Montgomery'}), split
  {len(train)} train / {len(val)} validation (chooses the epoch) / {len(test)} test (fixed seed {args.seed}).
- Licence: {licence}. Images: NLM (research use, cite Jaeger et al. 2014).
- Command: `{metrics['command']}` on {dev} ({metrics['minutes']} min); input {args.size} px through the app's
  preprocessing; MONAI affine/intensity augmentation; DiceCE loss; AdamW, warm-up + cosine schedule.

## Test split ({len(test)} pairs, not used for training or epoch choice)
| where | Dice | HD95 |
|---|---|---|
| model size ({args.size} px) | {m['dice']:.4f} | {m['hd95_px']:.1f} px |
| full resolution (app path, mask upsampled) | {full['dice']:.4f} | {full['hd95_px']:.1f} px |

Goal: Dice >= 0.95 on lungs. Decision support only; not a medical device.
""")
    print(f"test: Dice {m['dice']:.4f} HD95 {m['hd95_px']:.1f} px at {args.size} px; full resolution Dice "
          f"{full['dice']:.4f} HD95 {full['hd95_px']:.1f} px", flush=True)
    return 0

if __name__ == "__main__":
    sys.exit(main())
