"""One training loop for the MONAI classifiers and segmenters, used by the training scripts and
by the app's training jobs: in-memory tensors, MONAI random transforms per sample, AdamW with a
warm-up + cosine schedule over the epoch or time budget (whichever is tighter), the best epoch kept by a
validation score, early stopping, a time budget, a
progress callback and a stop check (job cancellation). CPU or CUDA."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn


class Cancelled(Exception):
    """The stop check asked the loop to end; no model comes out of it."""


@dataclass
class FitResult:
    best_state: dict
    best_score: float
    history: list[dict] = field(default_factory=list)
    minutes: float = 0.0
    stopped_early: bool = False


def classifier_augment(seed: int = 0) -> Callable:
    """MONAI random affine, intensity scale/shift, contrast and noise on a 1xHxW tensor."""
    from monai.transforms import (Compose, RandAdjustContrast, RandAffine, RandGaussianNoise, RandScaleIntensity,
                                  RandShiftIntensity)

    t = Compose([RandAffine(prob=0.8, rotate_range=0.17, scale_range=0.12, shear_range=0.05, translate_range=(0.06, 0.06),
                            padding_mode="border"),
                 RandScaleIntensity(factors=0.15, prob=0.5), RandShiftIntensity(offsets=0.08, prob=0.5),
                 RandAdjustContrast(gamma=(0.7, 1.4), prob=0.4), RandGaussianNoise(prob=0.25, std=0.02)])
    t.set_random_state(seed)
    return lambda x, y: (torch.as_tensor(t(x)), y)


def segmenter_augment(seed: int = 0) -> Callable:
    """The same geometry applied to image and mask (nearest for the mask), intensity on the image."""
    from monai.transforms import Compose, RandAdjustContrastd, RandAffined, RandGaussianNoised, RandScaleIntensityd

    t = Compose([RandAffined(keys=["image", "label"], prob=0.7, rotate_range=0.15, scale_range=0.12,
                             translate_range=(0.05, 0.05), mode=("bilinear", "nearest"), padding_mode="zeros"),
                 RandScaleIntensityd(keys="image", factors=0.15, prob=0.5),
                 RandAdjustContrastd(keys="image", gamma=(0.7, 1.4), prob=0.4),
                 RandGaussianNoised(keys="image", prob=0.2, std=0.02)])
    t.set_random_state(seed)

    def run(x, y):
        d = t({"image": x, "label": y})
        return torch.as_tensor(d["image"]), torch.as_tensor(d["label"])

    return run


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable, validate: Callable[[nn.Module], float],
        epochs: int = 10, lr: float = 1e-3, batch: int = 32, augment: Callable | None = None, weight_decay: float = 5e-4,
        patience: int | None = None, max_minutes: float | None = None, seed: int = 0,
        on_epoch: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None) -> FitResult:
    """Train `model` in place; return the state of the epoch with the best `validate` score.

    x: N x C x H x W; y: class indices (N) or masks (N x 1 x H x W). `on_epoch` gets
    {epoch, epochs, train_loss, val_score, minutes}; `should_stop` is asked between batches and
    raises `Cancelled` when it answers True."""
    dev = next(model.parameters()).device
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    per_epoch = max(1, int(np.ceil(len(x) / batch)))
    steps = max(2, epochs * per_epoch)
    best_state, best, bad, history, t0 = None, -np.inf, 0, [], time.time()
    stopped, step = False, 0

    def progress_fraction() -> float:
        """How far through the budget: steps, or time when a time budget is the tighter one, so
        the schedule anneals fully whichever ends the run."""
        f = step / steps
        if max_minutes:
            f = max(f, (time.time() - t0) / 60 / max_minutes)
        return min(1.0, f)

    def set_lr() -> None:  # linear warm-up over the first 10%, then cosine to 1% of the peak
        f = progress_fraction()
        k = f / 0.1 if f < 0.1 else 0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * (f - 0.1) / 0.9))
        for g in opt.param_groups:
            g["lr"] = lr * float(max(k, 0.01))

    for epoch in range(epochs):
        model.train()
        total, seen = 0.0, 0
        order = rng.permutation(len(x))
        for i in range(0, len(order), batch):
            if should_stop and should_stop():
                raise Cancelled("Training was cancelled.")
            idx = order[i:i + batch]
            if len(idx) < 2 and len(order) > 1:
                continue  # batch norm needs two samples
            pairs = [augment(x[j], y[j]) if augment else (x[j], y[j]) for j in idx]
            xb = torch.stack([torch.as_tensor(a) for a, _ in pairs]).float().to(dev)
            yb = torch.stack([torch.as_tensor(b) for _, b in pairs]).to(dev)
            set_lr()
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            step += 1
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        score = float(validate(model))
        minutes = (time.time() - t0) / 60
        row = {"epoch": epoch + 1, "epochs": epochs, "train_loss": round(total / max(1, seen), 5),
               "val_score": round(score, 5) if np.isfinite(score) else None, "minutes": round(minutes, 2)}
        history.append(row)
        if on_epoch:
            on_epoch(row)
        if best_state is None or (np.isfinite(score) and score > best):
            best, bad = (score if np.isfinite(score) else best), 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if patience and bad >= patience:
                stopped = True
                break
        if max_minutes and minutes >= max_minutes:
            stopped = True  # the schedule reached its end with the time budget
            break
    return FitResult(best_state, float(best), history, round((time.time() - t0) / 60, 2), stopped)


def class_weights(y: np.ndarray, n_classes: int, device) -> torch.Tensor:
    counts = np.bincount(np.asarray(y, dtype=int), minlength=n_classes)
    return torch.tensor(counts.sum() / (n_classes * np.maximum(counts, 1)), dtype=torch.float32, device=device)


@torch.no_grad()
def predict_probs(model: nn.Module, x: torch.Tensor, batch: int = 64) -> np.ndarray:
    """Softmax probabilities, N x classes."""
    dev = next(model.parameters()).device
    model.eval()
    if len(x) == 0:
        return np.zeros((0, 0))
    return np.concatenate([torch.softmax(model(x[i:i + batch].to(dev)), 1).cpu().numpy() for i in range(0, len(x), batch)])


@torch.no_grad()
def predict_masks(model: nn.Module, x: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """Binary masks, N x 1 x H x W."""
    dev = next(model.parameters()).device
    model.eval()
    return torch.cat([(torch.sigmoid(model(x[i:i + batch].to(dev))) >= 0.5).float().cpu() for i in range(0, len(x), batch)])
