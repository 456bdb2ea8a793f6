"""Detector latency: PyTorch vs ONNX Runtime on the same 416-px input (the ratio is reported),
the whole pipeline (whole-image pass + tiles) at 512 and 2048 px, the text verifier's share of
it on an image with burned-in lines (with / without, same process), and the protect path per image
(decode + both detectors + read + decide + seal) on the PHI evaluation's images of both size bands,
next to the YOLO-only path (decode + YOLO + verifier + seal) and the OCR text detector alone at full
resolution, all interleaved in one run.

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


def protect_paths(n_small: int = 20, n_large: int = 6) -> None:
    """Median ms per image of the protect path, the YOLO-only path and DBNet alone at full resolution."""
    from pathlib import Path

    from bench.common import interleaved_medians
    from core.config import PROJECT_ROOT
    from core.crypto.keys import new_data_key
    from core.crypto.masking import apply_mask
    from core.crypto.sealing import cipher, seal_regions
    from core.imaging.decode import decode_image
    from core.imaging.display import encode_png, to_display_uint8
    from core.ml import ocr, phidetect, textverify
    from core.ml.synth import ultrasound_background
    from scripts.phi_eval_data import build

    data = PROJECT_ROOT.parent / "shared" / "data"
    if data.exists():
        from scripts.detector_data import backgrounds

        bgs = backgrounds(Path(data), "val", 200, 3)
    else:  # without the shared data: synthetic ultrasound frames only
        rng = np.random.default_rng(0)
        bgs = [ultrasound_background(rng) for _ in range(20)]
    model, ver, eng = detector.load(), textverify.load(), ocr.load()

    def seal(pixels, boxes):
        seal_regions(cipher(new_data_key()), 1, pixels, boxes, 1)
        for b in boxes:
            apply_mask(pixels, b, "solid", 1)

    def both(png):
        dec = decode_image(png)
        px = np.array(dec.pixels)
        regions = phidetect.find(to_display_uint8(px, photometric=dec.photometric), model=model, verifier=ver, engine=eng)
        seal(px, [r.box for r in regions if r.cls == "phi"])

    def yolo_only(png):
        dec = decode_image(png)
        px = np.array(dec.pixels)
        dets = detector.detect(to_display_uint8(px, photometric=dec.photometric), model=model, verifier=ver)
        seal(px, [d.box for d in dets if d.cls == "phi"])

    def ocr_full(png):
        dec = decode_image(png)
        ocr._detect_once(eng, ocr._bgr(np.asarray(dec.pixels)), 1.0)

    for band, n in (("small", n_small), ("large", n_large)):
        pngs = [encode_png(s.image) for s in build(bgs, n, band, seed=55 if band == "small" else 56)]
        both(pngs[0]), yolo_only(pngs[0]), ocr_full(pngs[0])
        per = [interleaved_medians([lambda p=p: both(p), lambda p=p: yolo_only(p), lambda p=p: ocr_full(p)], 1) for p in pngs]
        med = [float(np.median([x[k] for x in per])) * 1e3 for k in range(3)]
        label = "300-1800 px" if band == "small" else "2000-3000 px"
        print(f"protect path, {label}, {n} images, median ms per image: both detectors + read + decide + seal "
              f"{med[0]:.0f}, YOLO-only path {med[1]:.0f} (ratio {med[0] / med[1]:.2f}x), OCR detector alone at full "
              f"resolution {med[2]:.0f}")


if __name__ == "__main__":
    main()
    protect_paths()
