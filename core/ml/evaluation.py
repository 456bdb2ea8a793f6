"""Evaluation metrics shared by the training scripts and the app's evaluation jobs:
classification (AUC with a bootstrap interval, ACC, sensitivity, specificity, precision, F1,
confusion, ROC) and segmentation (Dice, HD95 through MONAI's metrics)."""

from __future__ import annotations

import numpy as np


def bootstrap_auc(y: np.ndarray, p: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the ROC AUC over `n` bootstrap resamples."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        if len(np.unique(y[idx])) == 2:
            boots.append(roc_auc_score(y[idx], p[idx]))
    if not boots:
        return float("nan"), float("nan")
    return float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5, seed: int = 0) -> dict:
    """y: 0/1 truth, p: probability of the positive class."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_score, roc_auc_score, roc_curve

    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    both = len(np.unique(y)) == 2
    out = {"n": int(len(y)), "threshold": float(threshold),
           "acc": float((pred == y).mean()) if len(y) else float("nan"),
           "sensitivity": float(tp / max(1, tp + fn)), "specificity": float(tn / max(1, tn + fp)),
           "precision": float(precision_score(y, pred, zero_division=0)),
           "f1": float(f1_score(y, pred, zero_division=0)),
           "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}}
    if both:
        fpr, tpr, _ = roc_curve(y, p)
        step = max(1, len(fpr) // 60)
        out.update({"auc": float(roc_auc_score(y, p)), "auc_ci95": list(bootstrap_auc(y, p, seed=seed)),
                    "roc": {"fpr": fpr[::step].round(4).tolist() + [1.0], "tpr": tpr[::step].round(4).tolist() + [1.0]}})
    else:
        out.update({"auc": float("nan"), "auc_ci95": [float("nan"), float("nan")]})
    return out


def multiclass_metrics(y: np.ndarray, probs: np.ndarray, class_names: tuple[str, ...], positive: str | None = None,
                       seed: int = 0) -> dict:
    """Overall ACC and confusion over all classes, plus the binary figures of `positive` vs rest
    (the first class when not given)."""
    from sklearn.metrics import confusion_matrix

    y = np.asarray(y).astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    k = class_names.index(positive) if positive else 0
    pred = probs.argmax(axis=1)
    out = binary_metrics((y == k).astype(int), probs[:, k], seed=seed)
    out.update({"positive": class_names[k], "acc_all_classes": float((pred == y).mean()) if len(y) else float("nan"),
                "confusion_all": confusion_matrix(y, pred, labels=list(range(len(class_names)))).tolist(),
                "classes": list(class_names)})
    return out


def segmentation_metrics(pred: "np.ndarray", truth: "np.ndarray") -> dict:
    """pred, truth: N x 1 x H x W binary arrays or tensors. Mean Dice and mean HD95 (pixels)."""
    import torch
    from monai.metrics import DiceMetric, HausdorffDistanceMetric

    p = torch.as_tensor(np.asarray(pred), dtype=torch.float32)
    t = torch.as_tensor(np.asarray(truth), dtype=torch.float32)
    dice = DiceMetric(include_background=True, reduction="mean")(p, t)
    hd = HausdorffDistanceMetric(percentile=95, reduction="mean")(p, t)
    d = torch.nanmean(dice).item()
    h = torch.nanmean(hd[torch.isfinite(hd)]).item() if torch.isfinite(hd).any() else float("nan")
    return {"n": int(p.shape[0]), "dice": float(d), "hd95_px": float(h)}
