"""Image classifiers (MONAI networks), preprocessing for any uploaded image, Monte Carlo dropout
uncertainty and triage. Models load once per process; CPU by default, CUDA when present."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

ARCHS = ("densenet121", "resnet18", "efficientnet-b0")


def build(arch: str = "densenet121", num_classes: int = 2, dropout: float = 0.2, in_channels: int = 1) -> nn.Module:
    """A 2D MONAI network with dropout before the classifier (MC dropout needs it)."""
    from monai.networks import nets

    if arch == "densenet121":
        return nets.DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=num_classes, dropout_prob=dropout)
    if arch == "resnet18":
        # the standard stride-2 stem (MONAI's default stride 1 costs four times the compute)
        model = nets.resnet18(spatial_dims=2, n_input_channels=in_channels, num_classes=num_classes, conv1_t_stride=2)
        model.fc = nn.Sequential(nn.Dropout(dropout), model.fc)
        return model
    if arch == "efficientnet-b0":
        # EfficientNet-B0 carries its own dropout (0.2) before the classifier
        return nets.EfficientNetBN("efficientnet-b0", spatial_dims=2, in_channels=in_channels,
                                   num_classes=num_classes, pretrained=False)
    raise ValueError(f"Unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}.")


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def preprocess(pixels: np.ndarray, photometric: str = "", frames: int = 1, size: int = 224,
               window: tuple[float, float] | None = None) -> torch.Tensor:
    """Any decoded image (8/16-bit, signed HU, RGB, MONOCHROME1, multi-frame) -> 1x1xSxS in [0, 1].
    A DICOM window (center, width) is applied when given, else a 0.5-99.5 percentile range."""
    from monai.transforms import Compose, Resize, ScaleIntensityRange, ScaleIntensityRangePercentiles

    arr = np.asarray(pixels[0] if frames > 1 else pixels, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[..., :3].mean(axis=2)
    if window is not None:
        c, w = window
        scale = ScaleIntensityRange(a_min=c - w / 2, a_max=c + w / 2, b_min=0.0, b_max=1.0, clip=True)
    else:
        scale = ScaleIntensityRangePercentiles(lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)
    t = Compose([scale, Resize((size, size))])(arr[None])
    t = torch.as_tensor(np.asarray(t), dtype=torch.float32)
    if photometric.upper() == "MONOCHROME1":
        t = 1.0 - t
    return t[None]


@dataclass
class Prediction:
    class_names: tuple[str, ...]
    probabilities: np.ndarray  # mean over passes
    passes: int
    predictive_entropy: float  # total uncertainty, bits
    epistemic: float  # mutual information: the model's own uncertainty, bits
    pass_probabilities: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    @property
    def label(self) -> str:
        return self.class_names[int(np.argmax(self.probabilities))]

    def as_dict(self) -> dict[str, float]:
        return {n: float(p) for n, p in zip(self.class_names, self.probabilities)}


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    return -(p * np.log2(np.clip(p, 1e-12, 1.0))).sum(axis=axis)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, class_names: tuple[str, ...], mc_passes: int = 0) -> Prediction:
    """Softmax probabilities; with `mc_passes` > 1 the dropout layers stay active and the passes
    give predictive entropy and its epistemic part (mutual information)."""
    dev = next(model.parameters()).device
    x = x.to(dev)
    model.eval()
    if mc_passes > 1:
        for m in model.modules():
            if isinstance(m, nn.Dropout | nn.Dropout2d | nn.AlphaDropout):
                m.train()
        probs = np.stack([torch.softmax(model(x), dim=1)[0].cpu().numpy() for _ in range(mc_passes)])
        model.eval()
    else:
        probs = torch.softmax(model(x), dim=1)[0].cpu().numpy()[None]
    mean = probs.mean(axis=0)
    total = float(_entropy(mean))
    expected = float(_entropy(probs).mean())
    return Prediction(tuple(class_names), mean, len(probs), total, max(0.0, total - expected), probs)


def pool(predictions: list[Prediction]) -> Prediction:
    """An ensemble: every member's passes pooled; the epistemic part now also holds the members'
    disagreement."""
    if not predictions:
        raise ValueError("Nothing to pool.")
    names = predictions[0].class_names
    if any(p.class_names != names for p in predictions):
        raise ValueError("Ensemble members must share their classes.")
    probs = np.concatenate([p.pass_probabilities for p in predictions])
    mean = probs.mean(axis=0)
    total = float(_entropy(mean))
    return Prediction(names, mean, len(probs), total, max(0.0, total - float(_entropy(probs).mean())), probs)


@dataclass(frozen=True)
class TriageThresholds:
    critical: float = 0.90  # probability of the positive class
    urgent: float = 0.70
    routine: float = 0.40
    max_uncertainty: float = 0.50  # predictive entropy (bits) above which a result is flagged
    margin: float = 0.05  # a probability this close to a threshold is flagged


def triage(p_positive: float, uncertainty: float, t: TriageThresholds = TriageThresholds()) -> tuple[str, bool, str]:
    """(priority, flagged for review, reason)."""
    if p_positive >= t.critical:
        level = "critical"
    elif p_positive >= t.urgent:
        level = "urgent"
    elif p_positive >= t.routine:
        level = "routine"
    else:
        level = "normal"
    reasons = []
    if uncertainty > t.max_uncertainty:
        reasons.append(f"uncertain ({uncertainty:.2f} bits)")
    near = [n for n, v in (("critical", t.critical), ("urgent", t.urgent), ("routine", t.routine))
            if abs(p_positive - v) < t.margin]
    if near:
        reasons.append(f"near the {near[0]} threshold")
    return level, bool(reasons), "; ".join(reasons)


def findings_text(pred: Prediction, positive: str, level: str, flagged: bool, model_name: str) -> str:
    """A plain template (no language model)."""
    p = pred.as_dict().get(positive, 0.0)
    lines = [f"AI finding ({model_name}): {pred.label} (probability of {positive} {p:.0%}).",
             f"Triage priority: {level}."]
    if pred.passes > 1:
        lines.append(f"Uncertainty over {pred.passes} Monte Carlo passes: {pred.predictive_entropy:.2f} bits "
                     f"(model part {pred.epistemic:.2f}).")
    if flagged:
        lines.append("Flagged for a doctor's review.")
    lines.append("Decision support only; a clinician makes the diagnosis.")
    return " ".join(lines)


@functools.lru_cache(maxsize=4)
def load(path: str, sha256: str | None = None) -> tuple[nn.Module, tuple[str, ...], int, str]:
    """(model in eval mode on the device, class names, input size, arch), once per process;
    refused when the file does not match its recorded checksum."""
    from core.errors import IntegrityError, NotFound
    from core.hashing import file_sha256

    p = Path(path)
    if not p.exists():
        raise NotFound(f"No classifier weights at {p.name}: run scripts/train_classifier.py.")
    if sha256 and file_sha256(p) != sha256:
        raise IntegrityError("The classifier weights do not match their recorded checksum.")
    ckpt = torch.load(p, map_location="cpu", weights_only=True)
    model = build(ckpt["arch"], num_classes=len(ckpt["classes"]))
    model.load_state_dict(ckpt["state_dict"])  # weights may ship as float16: copied into float32
    return model.to(device()).eval(), tuple(ckpt["classes"]), int(ckpt.get("size", 224)), ckpt["arch"]


def compact_state_dict(model: nn.Module) -> dict:
    """The state dict with floating tensors as float16, for shipping (half the file size; the
    loader copies them back into float32 parameters)."""
    return {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()) for k, v in model.state_dict().items()}
