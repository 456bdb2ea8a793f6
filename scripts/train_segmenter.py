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
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.ml import classifier, segmenter  # noqa: E402
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


def augmenter(seed: int):
    from monai.transforms import Compose, RandAdjustContrastd, RandAffined, RandGaussianNoised, RandScaleIntensityd

    t = Compose([RandAffined(keys=["image", "label"], prob=0.7, rotate_range=0.15, scale_range=0.12,
                             translate_range=(0.05, 0.05), mode=("bilinear", "nearest"), padding_mode="zeros"),
                 RandScaleIntensityd(keys="image", factors=0.15, prob=0.5),
                 RandAdjustContrastd(keys="image", gamma=(0.7, 1.4), prob=0.4),
                 RandGaussianNoised(keys="image", prob=0.2, std=0.02)])
    t.set_random_state(seed)
    return t


@torch.no_grad()
def predict(model, x: torch.Tensor, dev, batch: int = 32) -> torch.Tensor:
    model.eval()
    return torch.cat([(torch.sigmoid(model(x[i:i + batch].to(dev))) >= 0.5).float().cpu() for i in range(0, len(x), batch)])


def full_resolution_dice(model, items, size: int) -> dict:
    """Dice and HD95 at each image's own size, through core.ml.segmenter.segment."""
    from PIL import Image

    preds, truths, dices = [], [], []
    for img_path, mask_path in items:
        arr = np.asarray(Image.open(img_path).convert("L"))
        truth = np.asarray(Image.open(mask_path).convert("L")) >= 128
        seg = segmenter.segment(model, classifier.preprocess(arr, size=size), truth.shape)
        m = segmentation_metrics(seg.mask[None, None], truth[None, None])
        dices.append(m["dice"])
        preds.append(m["hd95_px"])
    return {"n": len(items), "dice": float(np.mean(dices)), "hd95_px": float(np.nanmean(preds))}


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

    loss_fn = DiceCELoss(sigmoid=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-5)
    steps = args.epochs * int(np.ceil(len(xtr) / args.batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    aug = augmenter(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"lung-{args.variant}" + ("-montgomery" if args.montgomery_only else "")
    best_state, best_dice, history, t0 = None, -1.0, [], time.time()
    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        order = rng.permutation(len(xtr))
        for i in range(0, len(order), args.batch):
            idx = order[i:i + args.batch]
            batch = [aug({"image": xtr[j], "label": ytr[j]}) for j in idx]
            xb = torch.stack([torch.as_tensor(b["image"]) for b in batch]).float().to(dev)
            yb = torch.stack([torch.as_tensor(b["label"]) for b in batch]).float().to(dev)
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            if sched.last_epoch + 1 < steps:
                sched.step()
            total += float(loss) * len(idx)
        m = segmentation_metrics(predict(model, xva, dev), yva)
        minutes = (time.time() - t0) / 60
        history.append({"epoch": epoch + 1, "train_loss": round(total / len(xtr), 5), "val_dice": round(m["dice"], 5)})
        print(f"epoch {epoch + 1}: loss {total / len(xtr):.4f} val dice {m['dice']:.4f} hd95 {m['hd95_px']:.1f} px "
              f"({minutes:.1f} min)", flush=True)
        if m["dice"] > best_dice:
            best_dice = m["dice"]
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if args.max_minutes and minutes > args.max_minutes:
            print(f"stopping: {args.max_minutes} min budget reached", flush=True)
            break
    model.load_state_dict(best_state)
    weights = out / f"{stem}.pt"
    torch.save({"variant": args.variant, "channels": channels, "size": args.size,
                "state_dict": classifier.compact_state_dict(model)}, weights)
    model, size, _ = segmenter.load.__wrapped__(str(weights))  # evaluate the shipped file, as the app loads it
    m = segmentation_metrics(predict(model, xte, dev), yte)
    full = full_resolution_dice(model, test, size)
    licence = ("NLM Montgomery County set (research use; cite Jaeger et al. 2014)" if args.montgomery_only else
               "includes Shenzhen masks: CC BY-NC-SA 4.0, so these weights are for non-commercial use only")
    metrics = {"test": m, "test_full_resolution": full, "best_val_dice": best_dice, "history": history,
               "test_pairs": len(test), "val_pairs": len(val), "train_pairs": len(train), "size": args.size,
               "variant": args.variant, "licence": licence, "device": str(dev),
               "minutes": round((time.time() - t0) / 60, 1),
               "command": "python scripts/train_segmenter.py " + " ".join(sys.argv[1:])}
    (out / f"{stem}.json").write_text(json.dumps(metrics, indent=2))
    (out / f"{stem}.md").write_text(f"""# Lung segmenter `{stem}` (MONAI {args.variant})

- Weights: `{stem}.pt` (`{{variant, channels, size, state_dict}}`, float16 tensors); metrics: `{stem}.json`
- Data: `cxr-lung-seg` ({'Montgomery pairs only' if args.montgomery_only else 'Shenzhen + Montgomery'}), split
  {len(train)} train / {len(val)} validation (chooses the epoch) / {len(test)} test (fixed seed {args.seed}).
- Licence: {licence}. Images: NLM (research use, cite Jaeger et al. 2014).
- Command: `{metrics['command']}` on {dev} ({metrics['minutes']} min); input {args.size} px through the app's
  preprocessing; MONAI affine/intensity augmentation; DiceCE loss; AdamW, one-cycle schedule.

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
