"""Detector latency: PyTorch vs ONNX Runtime on the same 416-px input (the ratio is reported),
and the whole pipeline (whole-image pass + tiles) at 512 and 2048 px.

    .venv/bin/python -m bench.bench_detector
"""

from __future__ import annotations

import numpy as np

from bench.common import median_time
from core.ml import detector, yolo_env


def main() -> None:
    YOLO = yolo_env.import_yolo()

    pt = detector.DEFAULT_WEIGHTS
    onnx = pt.with_suffix(".onnx")
    img = (np.random.default_rng(0).random((416, 416, 3)) * 255).astype(np.uint8)
    torch_model = YOLO(str(pt), task="detect")
    onnx_model = YOLO(str(onnx), task="detect")
    for m in (torch_model, onnx_model):
        for _ in range(3):
            m.predict(img, imgsz=416, verbose=False, device="cpu")
    t_pt = median_time(lambda: torch_model.predict(img, imgsz=416, verbose=False, device="cpu"), 30)
    t_ox = median_time(lambda: onnx_model.predict(img, imgsz=416, verbose=False, device="cpu"), 30)
    print(f"one 416 px input: PyTorch {t_pt * 1e3:.1f} ms, ONNX Runtime {t_ox * 1e3:.1f} ms, "
          f"ratio ONNX/PyTorch {t_ox / t_pt:.2f}x")
    for size in (512, 2048):
        big = (np.random.default_rng(1).random((size, size)) * 255).astype(np.uint8)
        detector.detect(big)
        t = median_time(lambda: detector.detect(big), 5)
        n = len(detector.run_passes(detector.load(), big))  # whole image (and 832 px when small), tiles when large
        print(f"full pipeline {size}x{size}: {t * 1e3:.0f} ms ({n} model passes)")


if __name__ == "__main__":
    main()
