"""Train and evaluate an image classifier with MONAI and ship it under models/classifier/ with a
model card.

    .venv/bin/python scripts/train_classifier.py --dataset cxr   [--arch resnet18] [--size 128] [--max-minutes 20]
    .venv/bin/python scripts/train_classifier.py --dataset busi  [--arch resnet18] [--size 128] [--max-minutes 12]

Data sets (../shared/data): `cxr` = kermany-cxr-224 (NORMAL vs PNEUMONIA, Kaggle train/test split),
`busi` = busi-breast-us-256 (malignant / normal / benign; the BreastMNIST-sized split).

Every image goes through the app's own preprocessing (`core.ml.classifier.preprocess`: rows
first, MONAI percentile intensity scaling, MONAI resize), so the model sees at training time
exactly what it sees in the app. The preprocessed set is held in memory; MONAI random transforms
augment each training sample (affine, intensity scale/shift, contrast, noise). Class imbalance:
class-weighted cross-entropy. Early stopping on the AUC of a validation split (carved from train,
stratified, fixed seed). The untouched test split gives AUC with a bootstrap 95% interval, ACC,
sensitivity, specificity, precision, F1, confusion and ROC. GPU when present.
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

from core.ml import classifier, finetune  # noqa: E402
from core.ml.evaluation import multiclass_metrics  # noqa: E402

OUT = ROOT / "models" / "classifier"
DATA = ROOT.parent / "shared" / "data"
SETS = {  # name -> (classes, positive class, file stem, data folder)
    "cxr": (("NORMAL", "PNEUMONIA"), "PNEUMONIA", "cxr", "kermany-cxr-224"),
    "busi": (("malignant", "normal", "benign"), "malignant", "breast-us", "busi-breast-us-256"),
}


def load_images(paths_or_arrays, size: int) -> torch.Tensor:
    """N x 1 x size x size float tensor through the app's preprocessing."""
    from PIL import Image

    out = []
    for item in paths_or_arrays:
        arr = np.asarray(Image.open(item).convert("L")) if isinstance(item, str | Path) else np.asarray(item)
        out.append(classifier.preprocess(arr, size=size)[0])
    return torch.stack(out)


def stratified_split(y: np.ndarray, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(y):
        idx = np.where(y == c)[0]
        rng.shuffle(idx)
        k = int(round(len(idx) * frac))
        held += idx[:k].tolist()
        keep += idx[k:].tolist()
    return np.array(sorted(keep)), np.array(sorted(held))


def load_dataset(name: str, root: Path, size: int, limit: int | None, seed: int):
    """(x_train, y_train, x_val, y_val, x_test, y_test)."""
    if name == "cxr":
        rows = {"train": [], "test": []}
        with open(root / "labels.csv") as fh:
            for r in csv.DictReader(fh):
                rows[r["split"]].append((str(root / r["path"]), int(r["label"])))
        rng = np.random.default_rng(seed)
        for k in rows:
            rows[k].sort()
            if limit:
                rng.shuffle(rows[k])
                rows[k] = rows[k][: limit if k == "train" else max(32, limit // 4)]
        y_all = np.array([y for _, y in rows["train"]])
        tr, va = stratified_split(y_all, 0.1, seed)
        x_all = load_images([p for p, _ in rows["train"]], size)
        x_te = load_images([p for p, _ in rows["test"]], size)
        return x_all[tr], y_all[tr], x_all[va], y_all[va], x_te, np.array([y for _, y in rows["test"]])
    if name == "busi":
        d = np.load(root / "busi_breast_256.npz")
        parts = []
        for split in ("train", "val", "test"):
            imgs, ys = d[f"{split}_images"], d[f"{split}_labels3"].reshape(-1)
            if limit:
                imgs, ys = imgs[: limit if split == "train" else max(16, limit // 4)], ys[: limit if split == "train" else max(16, limit // 4)]
            parts += [load_images(list(imgs), size), ys.astype(int)]
        return tuple(parts)
    raise ValueError(name)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="cxr", choices=sorted(SETS))
    ap.add_argument("--data", default=None, help="data folder (default ../shared/data/<set>)")
    ap.add_argument("--arch", default="resnet18", choices=classifier.ARCHS)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--patience", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--limit", type=int, default=None, help="use only this many training images (smoke runs)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-minutes", type=float, default=None, help="stop after the epoch that passes this")
    args = ap.parse_args()
    classes, positive, stem, folder = SETS[args.dataset]
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    t_load = time.time()
    xtr, ytr, xva, yva, xte, yte = load_dataset(args.dataset, Path(args.data or DATA / folder), args.size, args.limit, args.seed)
    print(f"loaded {len(xtr)}/{len(xva)}/{len(xte)} images in {time.time() - t_load:.0f} s", flush=True)
    model = classifier.build(args.arch, num_classes=len(classes), dropout=0.2).to(dev)
    loss_fn = torch.nn.CrossEntropyLoss(weight=finetune.class_weights(ytr, len(classes), dev), label_smoothing=0.05)

    def validate(m) -> float:
        r = multiclass_metrics(yva, finetune.predict_probs(m, xva), classes, positive, seed=args.seed)
        return r["auc"] if np.isfinite(r["auc"]) else r["acc_all_classes"]  # tiny smoke splits may lack a class

    def report(row: dict) -> None:
        print(f"epoch {row['epoch']}: loss {row['train_loss']:.4f} val AUC {row['val_score']} ({row['minutes']:.1f} min)", flush=True)

    fitted = finetune.fit(model, xtr, torch.as_tensor(ytr), loss_fn, validate, epochs=args.epochs, lr=args.lr,
                          batch=args.batch, augment=finetune.classifier_augment(args.seed), patience=args.patience,
                          max_minutes=args.max_minutes, seed=args.seed, on_epoch=report)
    best_auc, history = fitted.best_score, fitted.history
    model.load_state_dict(fitted.best_state)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights_path = out / f"{stem}-{args.arch}.pt"
    torch.save({"arch": args.arch, "classes": classes, "size": args.size, "positive": positive,
                "state_dict": classifier.compact_state_dict(model)}, weights_path)
    # the shipped (float16) file is what is evaluated, through the app's loader
    model, _, _, _ = classifier.load.__wrapped__(str(weights_path))
    pt = finetune.predict_probs(model, xte)
    test = multiclass_metrics(yte, pt, classes, positive, seed=args.seed)
    metrics = {"test": test, "best_val_auc": best_auc, "history": history, "device": str(dev), "dataset": args.dataset,
               "positive": positive, "minutes": round(fitted.minutes, 1),
               "command": "python scripts/train_classifier.py " + " ".join(sys.argv[1:]),
               "train_images": int(len(xtr)), "val_images": int(len(xva)), "size": args.size, "arch": args.arch}
    (out / f"{stem}-{args.arch}.json").write_text(json.dumps(metrics, indent=2))
    write_card(out, stem, args, metrics)
    print(f"test ({positive} vs rest): AUC {test['auc']:.4f} [{test['auc_ci95'][0]:.3f}, {test['auc_ci95'][1]:.3f}] "
          f"ACC {test['acc']:.4f} (all classes {test['acc_all_classes']:.4f}) sens {test['sensitivity']:.3f} "
          f"spec {test['specificity']:.3f} F1 {test['f1']:.3f}", flush=True)
    return 0


DATA_NOTES = {
    "cxr": ("`kermany-cxr-224`: paediatric chest X-rays (Kermany et al., CC BY 4.0, Mendeley Data "
            "doi:10.17632/rscbjbr9sj.2), the Kaggle train/test split", "Reference (MedMNIST v2, PneumoniaMNIST, same 624 test "
            "patients): ResNet-18 (224) AUC 0.956 / ACC 0.864; ResNet-50 (224) AUC 0.962 / ACC 0.884."),
    "busi": ("`busi-breast-us-256`: BUSI breast ultrasound (Al-Dhabyani et al. 2020; CC BY 4.0 as listed by MedMNIST "
             "for BreastMNIST), 546/78/156 stratified split with BreastMNIST's sizes (not its official indices)",
             "Reference (MedMNIST v2, BreastMNIST, malignant vs rest): ResNet-18 (28) AUC 0.901 / ACC 0.863; "
             "Google AutoML Vision AUC 0.919."),
}


def write_card(out: Path, stem: str, args, metrics: dict) -> None:
    m = metrics["test"]
    data, ref = DATA_NOTES[args.dataset]
    c = m["confusion"]
    (out / f"{stem}-{args.arch}.md").write_text(f"""# Classifier `{stem}-{args.arch}`: {', '.join(SETS[args.dataset][0])}

- Weights: `{stem}-{args.arch}.pt` (`{{arch, classes, size, positive, state_dict}}`, float16 tensors); metrics: `{stem}-{args.arch}.json`
- Data: {data}. {metrics['train_images']} images trained, {metrics['val_images']} (stratified, seed {args.seed})
  chose the epoch; the untouched test split ({m['n']} images) gives the figures below.
- Command: `{metrics['command']}` on {metrics['device']} ({metrics['minutes']} min). Input {args.size} px through the
  app's own preprocessing (MONAI percentile scaling and resize); MONAI random affine/intensity/contrast/noise
  augmentation; class-weighted cross-entropy with label smoothing; AdamW, warm-up + cosine schedule over the epoch or time budget; no pretrained weights.

## Test split ({m['positive']} vs rest, threshold 0.5)
| AUC (95% bootstrap CI) | ACC | sensitivity | specificity | precision | F1 |
|---|---|---|---|---|---|
| {m['auc']:.3f} ({m['auc_ci95'][0]:.3f}-{m['auc_ci95'][1]:.3f}) | {m['acc']:.3f} | {m['sensitivity']:.3f} | {m['specificity']:.3f} | {m['precision']:.3f} | {m['f1']:.3f} |

Confusion: TN {c['tn']}, FP {c['fp']}, FN {c['fn']}, TP {c['tp']}. Accuracy over all classes: {m['acc_all_classes']:.3f}.

{ref}

Decision support only; not a medical device.
""")


if __name__ == "__main__":
    sys.exit(main())
