"""Explanations: the pytorch-grad-cam family with an automatic (or chosen) target layer, a
faithfulness score per map, and attention regions as boxes."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

CAM_METHODS = ("gradcam", "gradcam++", "xgradcam", "eigencam", "layercam", "scorecam")
METHODS = CAM_METHODS + ("integrated-gradients",)  # a second family: path attribution (Captum)


def _cls(method: str):
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM

    table = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "xgradcam": XGradCAM, "eigencam": EigenCAM,
             "layercam": LayerCAM, "scorecam": ScoreCAM}
    if method not in table:
        raise ValueError(f"Unknown CAM method {method!r}; choose one of {', '.join(METHODS)}.")
    return table[method]


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the convolutional layers, last first (choices for the target layer)."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][::-1]


MIN_MAP_SIDE = 7  # a target layer's map must be at least this many cells across to localise anything


def default_target_layer(model: nn.Module, x: torch.Tensor | None = None, min_side: int = MIN_MAP_SIDE) -> str:
    """The last convolutional layer whose feature map, for input `x`, is at least `min_side`
    cells across: the last block at the usual 224 px (7x7), one stage earlier at 128 px, where the
    last block's 4x4 map would paint the whole lung one colour. Without `x`, the last layer."""
    names = conv_layers(model)
    if not names:
        raise ValueError("The model has no convolutional layer to explain.")
    if x is None:
        return names[0]
    key = (tuple(x.shape[1:]), min_side)
    cached = _LAYER_CHOICE.setdefault(model, {})
    if key not in cached:  # one probe pass per model and input shape, not one per page rerun
        cached[key] = _probe_layer(model, names, x, min_side)
    return cached[key]


_LAYER_CHOICE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _probe_layer(model: nn.Module, names: list[str], x: torch.Tensor, min_side: int) -> str:
    sides: dict[str, int] = {}
    modules = dict(model.named_modules())
    hooks = [modules[n].register_forward_hook(lambda _m, _i, out, n=n: sides.__setitem__(n, min(out.shape[-2:])))
             for n in names]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(x[:1])
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return next((n for n in names if sides.get(n, 0) >= min_side), names[0])


def compute_cam(model: nn.Module, x: torch.Tensor, method: str = "gradcam", target_class: int | None = None,
                layer: str | None = None, batch_size: int = 32) -> np.ndarray:
    """A heatmap in [0, 1] with the input's height and width."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model.eval()
    if target_class is None:
        with torch.no_grad():
            target_class = int(model(x).argmax(dim=1)[0])
    if method == "integrated-gradients":
        return integrated_gradients(model, x, target_class)
    layer_mod = dict(model.named_modules())[layer or default_target_layer(model, x)]
    cam_cls = _cls(method)
    kwargs = {"batch_size": batch_size} if method == "scorecam" else {}
    with cam_cls(model=model, target_layers=[layer_mod]) as cam:
        if kwargs:
            cam.batch_size = batch_size
        heat = cam(input_tensor=x, targets=[ClassifierOutputTarget(target_class)])[0]
    heat = np.nan_to_num(heat.astype(np.float32))
    lo, hi = float(heat.min()), float(heat.max())
    return (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)


def integrated_gradients(model: nn.Module, x: torch.Tensor, target_class: int, steps: int = 32,
                         smooth_sigma: float = 2.0) -> np.ndarray:
    """Captum's Integrated Gradients from a black baseline: |attribution| per pixel, lightly
    smoothed (pixel attributions are speckled) and scaled to [0, 1]."""
    from captum.attr import IntegratedGradients
    from scipy import ndimage

    model.eval()
    attr = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=int(target_class),
                                                n_steps=steps, internal_batch_size=steps)
    heat = np.abs(attr.detach().cpu().numpy()[0]).sum(axis=0)
    heat = ndimage.gaussian_filter(heat, smooth_sigma) if smooth_sigma else heat
    lo, hi = float(heat.min()), float(np.percentile(heat, 99.5))
    return np.clip((heat - lo) / (hi - lo), 0, 1).astype(np.float32) if hi > lo else np.zeros_like(heat, dtype=np.float32)


@dataclass(frozen=True)
class CamQuality:
    confidence_drop: float  # fall of the class score when the top-heat pixels are removed (ROAD, MoRF)
    keep_change: float  # change when only the heat-weighted image is kept (CamMultImageConfidenceChange)

    @property
    def faithful(self) -> bool:
        return self.confidence_drop > 0.0


def cam_quality(model: nn.Module, x: torch.Tensor, heat: np.ndarray, target_class: int, percentile: int = 80) -> CamQuality:
    from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
    from pytorch_grad_cam.metrics.road import ROADMostRelevantFirst
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    targets = [ClassifierOutputSoftmaxTarget(target_class)]
    cams = heat[None].astype(np.float32)
    model.eval()
    with torch.no_grad():
        road = ROADMostRelevantFirst(percentile=percentile)(x, cams, targets, model)
        keep = CamMultImageConfidenceChange()(x, cams, targets, model)
    # ROAD returns (perturbed - original): a faithful map makes the score fall
    return CamQuality(confidence_drop=float(-np.asarray(road).ravel()[0]), keep_change=float(np.asarray(keep).ravel()[0]))


def attention_boxes(heat: np.ndarray, threshold: float = 0.5, max_boxes: int = 5) -> list[tuple[tuple[int, int, int, int], float]]:
    """Connected regions above `threshold` as boxes (x0, y0, x1, y1) with their share of the heat."""
    from scipy import ndimage

    mask = heat >= threshold
    labels, n = ndimage.label(mask)
    total = float(heat.sum()) or 1.0
    out = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        share = float(heat[labels == i].sum()) / total
        out.append(((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop), share))
    return sorted(out, key=lambda b: -b[1])[:max_boxes]
