"""Detector latency: PyTorch vs ONNX Runtime on the same 416-px input (the ratio is reported),
the whole pipeline (whole-image pass + tiles) at 512 and 2048 px, and the text verifier's share of
it on an image with burned-in lines (with / without, same process).

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
    # the text verifier's share: the pipeline with and without it on an image with burned-in lines
    from core.ml.synth import HELDOUT_FONTS, TextFactory, font_paths, render, ultrasound_background

    rng = np.random.default_rng(4)
    s = render(ultrasound_background(rng), rng, TextFactory(4), font_paths(HELDOUT_FONTS), long_side=1024)
    detector.detect(s.image)
    t_off = median_time(lambda: detector.detect(s.image, verifier=None), 5)
    t_on = median_time(lambda: detector.detect(s.image), 5)
    n = len(detector.detect(s.image, verifier=None))
    print(f"text verifier on a {s.image.shape[1]}x{s.image.shape[0]} image with {n} lines: {t_on * 1e3:.0f} ms with it, "
          f"{t_off * 1e3:.0f} ms without (ratio {t_on / t_off:.2f}x)")


if __name__ == "__main__":
    main()
