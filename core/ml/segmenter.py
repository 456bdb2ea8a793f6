"""2D segmentation (MONAI U-Net variants): build, predict a mask, report its area."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

VARIANTS = ("unet", "residual-unet", "attention-unet")


def build(variant: str = "residual-unet", channels: tuple[int, ...] = (16, 32, 64, 128, 256)) -> nn.Module:
    from monai.networks import nets

    strides = tuple([2] * (len(channels) - 1))
    if variant == "unet":
        return nets.UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=channels, strides=strides, num_res_units=0)
    if variant == "residual-unet":
        return nets.UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=channels, strides=strides, num_res_units=2)
    if variant == "attention-unet":
        return nets.AttentionUnet(spatial_dims=2, in_channels=1, out_channels=1, channels=channels, strides=strides)
    raise ValueError(f"Unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")


@dataclass
class Segmentation:
    mask: np.ndarray  # bool, at the image's size
    area_px: int
    area_fraction: float
    area_mm2: float | None


@torch.no_grad()
def segment(model: nn.Module, x: torch.Tensor, out_shape: tuple[int, int],
            pixel_spacing: tuple[float, float] | None = None, threshold: float = 0.5) -> Segmentation:
    """x: 1x1xSxS in [0, 1] (classifier.preprocess). The mask is resized back to `out_shape`."""
    import torch.nn.functional as F

    model.eval()
    prob = torch.sigmoid(model(x.to(next(model.parameters()).device)))
    prob = F.interpolate(prob, size=out_shape, mode="bilinear", align_corners=False)[0, 0].cpu().numpy()
    mask = prob >= threshold
    area = int(mask.sum())
    mm2 = area * pixel_spacing[0] * pixel_spacing[1] if pixel_spacing else None
    return Segmentation(mask, area, area / mask.size, mm2)


@functools.lru_cache(maxsize=2)
def load(path: str, sha256: str | None = None) -> tuple[nn.Module, int, str]:
    from core.errors import IntegrityError, NotFound
    from core.hashing import file_sha256

    p = Path(path)
    if not p.exists():
        raise NotFound(f"No segmenter weights at {p.name}: run scripts/train_segmenter.py.")
    if sha256 and file_sha256(p) != sha256:
        raise IntegrityError("The segmenter weights do not match their recorded checksum.")
    ckpt = torch.load(p, map_location="cpu", weights_only=True)
    model = build(ckpt["variant"], tuple(ckpt["channels"]))
    model.load_state_dict(ckpt["state_dict"])
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(dev).eval(), int(ckpt["size"]), ckpt["variant"]
