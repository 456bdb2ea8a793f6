"""Clinical-AI latency on one 224x224 input, each step against one PyTorch forward pass measured
in the same run: ONNX Runtime forward, MC dropout per pass, each CAM method, Integrated
Gradients, the ROAD quality score, and a lung-segmenter forward.

    .venv/bin/python -m bench.bench_classifier
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.common import median_time
from core.config import PROJECT_ROOT
from core.ml import cam, classifier, segmenter


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    shipped = PROJECT_ROOT / "models" / "classifier" / "cxr-resnet18.pt"
    if shipped.exists():
        model, classes, _, arch = classifier.load(str(shipped))
        print(f"model: shipped {shipped.name} ({arch})")
    else:
        model, arch = classifier.build("resnet18", 2).eval(), "resnet18"
        print("model: untrained resnet18 (no shipped weights)")
    x = torch.rand(1, 1, 224, 224)
    with torch.no_grad():
        for _ in range(3):
            model(x)
        t_fwd = median_time(lambda: model(x), 20)
    print(f"{'step':<26}{'ms':>9}{'x forward':>11}")

    def row(name: str, seconds: float) -> None:
        print(f"{name:<26}{seconds * 1e3:>9.1f}{seconds / t_fwd:>10.1f}x")

    row("PyTorch forward", t_fwd)
    try:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "m.onnx"
            torch.onnx.export(model, x, str(path), input_names=["x"], output_names=["y"], dynamo=False)
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            xn = x.numpy()
            sess.run(None, {"x": xn})
            row("ONNX Runtime forward", median_time(lambda: sess.run(None, {"x": xn}), 20))
    except Exception as exc:  # the benchmark still reports the rest
        print(f"ONNX Runtime: skipped ({type(exc).__name__}: {exc})")
    row("MC dropout, per pass", median_time(lambda: classifier.predict(model, x, ("a", "b"), mc_passes=10), 5) / 10)
    for method in cam.CAM_METHODS:
        n = 1 if method == "scorecam" else 5
        row(method, median_time(lambda m=method: cam.compute_cam(model, x, m, 1, batch_size=64), n))
    row("integrated-gradients", median_time(lambda: cam.compute_cam(model, x, "integrated-gradients", 1), 3))
    heat = cam.compute_cam(model, x, "gradcam", 1)
    row("ROAD quality score", median_time(lambda: cam.cam_quality(model, x, heat, 1), 5))
    seg_path = PROJECT_ROOT / "models" / "segmenter" / "lung-residual-unet.pt"
    seg, size, _ = segmenter.load(str(seg_path)) if seg_path.exists() else (segmenter.build().eval(), 128, "")
    xs = torch.rand(1, 1, size, size)
    with torch.no_grad():
        seg(xs)
        row(f"segmenter forward ({size} px)", median_time(lambda: seg(xs), 20))
    print(f"goal: a CAM under 300 ms on CPU at 224 px; the median of the gradient CAMs here is "
          f"{np.median([median_time(lambda m=m: cam.compute_cam(model, x, m, 1), 3) for m in ('gradcam', 'gradcam++', 'layercam')]) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
