"""Evaluate the shipped detector and write its model card.

Held-out synthetic set: fonts and seeds never used in training, backgrounds from the other half of
the lung X-rays, the chest X-ray TEST split (inner parts, free of their own burned-in text) and the DICOM samples, as whole images through the
full pipeline (whole-image pass + native-resolution tiles). A `large` subset has 2000-3000 px
images with text 18-20 px high. Reports box recall and precision at IoU 0.5 for PHI text, and
coverage recall (the share of PHI lines at least 90% covered by sealed boxes). Also draws the
detections on the real burned-in ultrasound samples into models/detector/samples/.

    .venv/bin/python scripts/eval_detector.py [--n 150] [--n-large 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.imaging.decode import decode_image  # noqa: E402
from core.imaging.display import to_display_uint8  # noqa: E402
from core.hashing import file_sha256  # noqa: E402
from core.ml import detector, textverify  # noqa: E402
from core.ml.synth import HELDOUT_FONTS  # noqa: E402
from scripts.detector_data import backgrounds, full_images  # noqa: E402

OUT = ROOT / "models" / "detector"
REAL = ["pydicom-wheel/examples_ybr_color.dcm", "pydicom-wheel/examples_rgb_color.dcm", "pydicom-wheel/examples_jpeg2k.dcm",
        "pydicom-wheel/examples_palette.dcm", "pydicom-data/US1_UNCR.dcm", "pydicom-data/OBXXXX1A.dcm",
        "pydicom-data/gdcm-US-ALOKA-16.dcm", "pydicom-data/JPGLosslessP14SV1_1s_1f_8b.dcm", "nema-wg04/XA1_UNC.dcm"]


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def match(preds: list[tuple[tuple, float]], gt: list[tuple], thr: float = 0.5) -> tuple[int, int, int]:
    """(true, false positives, misses): each prediction, most confident first, takes the free ground-truth
    box it overlaps best, counted when the IoU reaches `thr`."""
    used: set[int] = set()
    tp = fp = 0
    for box, _ in sorted(preds, key=lambda p: -p[1]):
        best, bi = 0.0, -1
        for i, g in enumerate(gt):
            if i not in used and (v := iou(box, g)) > best:
                best, bi = v, i
        if best >= thr:
            tp += 1
            used.add(bi)
        else:
            fp += 1
    return tp, fp, len(gt) - len(used)


def score(samples, confs: list[float], model, iou_thr: float = 0.5, verifier=None) -> dict[float, dict]:
    """Figures at each confidence threshold. The model runs once per image at the lowest threshold;
    `combine` at a higher one keeps exactly what a run at that threshold keeps (greedy NMS among the
    boxes above it is the same), so every row is what `detect(conf=...)` gives."""
    acc = {c: dict(tp=0, fp=0, fn=0, covered=0, total=0, ink_lines=0, ink_total=0, ink_hit=0, times=[]) for c in confs}
    for s in samples:
        h, w = s.image.shape[:2]
        t = time.perf_counter()
        passes = detector.run_passes(model, s.image, conf=min(confs))
        t_passes = time.perf_counter() - t
        gt = [b[1:] for b in s.boxes if b[0] == 0]
        for conf in confs:
            a = acc[conf]
            t = time.perf_counter()
            found = detector.combine(passes, h, w, conf=conf)
            if verifier is not None:  # the pipeline's second look (detector.detect does the same)
                found = textverify.apply(s.image, found, verifier)
            raw = [d for d in found if d.cls == "phi"]
            # the model's boxes are matched at IoU 0.5; the sealed ones (grown by the pipeline's margin) measure cover
            dets = detector.seal_boxes(raw, h, w)
            a["times"].append(t_passes + time.perf_counter() - t)
            tp, fp, fn = match([((d.box.x0, d.box.y0, d.box.x1, d.box.y1), d.confidence) for d in raw], gt, iou_thr)
            a["tp"], a["fp"], a["fn"] = a["tp"] + tp, a["fp"] + fp, a["fn"] + fn
            mask = np.zeros((h, w), bool)
            for d in dets:
                mask[d.box.y0:d.box.y1, d.box.x0:d.box.x1] = True
            for g in gt:
                area = max(1, (g[2] - g[0]) * (g[3] - g[1]))
                a["total"] += 1
                a["covered"] += mask[g[1]:g[3], g[0]:g[2]].sum() / area >= 0.9
                if s.ink is not None:  # the text's own pixels: what a reader could see
                    ink = s.ink[g[1]:g[3], g[0]:g[2]]
                    n, hit = int(ink.sum()), int((ink & mask[g[1]:g[3], g[0]:g[2]]).sum())
                    a["ink_total"], a["ink_hit"] = a["ink_total"] + n, a["ink_hit"] + hit
                    a["ink_lines"] += n == 0 or hit >= 0.99 * n
    out = {}
    for conf, a in acc.items():
        tp, fp, fn, total = a["tp"], a["fp"], a["fn"], a["total"]
        out[conf] = {"images": len(samples), "phi_lines": total, "recall_iou50": tp / max(1, tp + fn),
                     "precision_iou50": tp / max(1, tp + fp), "coverage_recall": a["covered"] / max(1, total),
                     "ink_line_recall": a["ink_lines"] / max(1, total),
                     "ink_pixels_sealed": a["ink_hit"] / max(1, a["ink_total"]),
                     "median_ms_per_image": float(np.median(a["times"]) * 1e3) if a["times"] else None}
    return out


def render_real(data_root: Path, conf: float, model, verifier=None) -> list[dict]:
    (OUT / "samples").mkdir(parents=True, exist_ok=True)
    rows = []
    for rel in REAL:
        p = data_root / "dicom-samples" / rel
        if not p.exists():
            continue
        img = decode_image(p.read_bytes())
        view = to_display_uint8(img.pixels, photometric=img.photometric, frames=img.frames)
        dets = detector.detect(view, conf=conf, model=model, verifier=verifier)
        im = Image.fromarray(view).convert("RGB")
        d = ImageDraw.Draw(im)
        for det in dets:
            b = det.box
            d.rectangle((b.x0, b.y0, b.x1, b.y1), outline=(255, 40, 40) if det.cls == "phi" else (40, 220, 40), width=2)
        name = Path(rel).stem + ".jpg"
        im.save(OUT / "samples" / name, quality=80)
        rows.append({"file": rel, "modality": img.modality, "size": f"{img.cols}x{img.rows}",
                     "phi_boxes": sum(x.cls == "phi" for x in dets), "annotation_boxes": sum(x.cls == "annotation" for x in dets),
                     "render": f"samples/{name}"})
    return rows


def main() -> int:
    global OUT
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--n-large", type=int, default=30)
    ap.add_argument("--conf", type=float, default=0.25, help="the operating point the card reports")
    ap.add_argument("--also-conf", type=float, nargs="*", default=[0.3, 0.35], help="other thresholds, for comparison")
    ap.add_argument("--weights", default=str(detector.DEFAULT_WEIGHTS))
    ap.add_argument("--out", default=None, help="where metrics.json, the card and the renders go (models/detector)")
    ap.add_argument("--verifier", default=str(textverify.DEFAULT_WEIGHTS),
                    help="the text verifier's weights ('none': the detector alone)")
    args = ap.parse_args()
    OUT = Path(args.out) if args.out else OUT
    root = Path(args.data_root)
    model = detector.load(args.weights)
    verifier = None if args.verifier == "none" else textverify.load(args.verifier)
    confs = sorted({args.conf, *args.also_conf})
    bgs = backgrounds(root, "val", 400, 3)
    heldout = score(full_images(bgs, args.n, 3, HELDOUT_FONTS), confs, model, verifier=verifier)
    large = score(full_images(bgs, args.n_large, 4, HELDOUT_FONTS, large=True), confs, model, verifier=verifier)
    res = {"conf": args.conf, "heldout": heldout[args.conf], "heldout_large_2000_3000px_text_18_20px": large[args.conf],
           "thresholds": {str(c): {"heldout": heldout[c], "large": large[c]} for c in confs},
           "verifier": None if verifier is None else {"weights": Path(args.verifier).name,
                                                      "sha256": file_sha256(Path(args.verifier)),
                                                      "policy": asdict(textverify.Policy())},
           "real_samples": render_real(root, args.conf, model, verifier)}
    res["weights_sha256"] = file_sha256(Path(args.weights))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "metrics.json").write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k != "real_samples"}, indent=2))
    write_card(res)
    return 0


def _data_minutes(train: dict) -> str:
    m = [st.get("data_minutes") for st in train.get("stages", [])]
    if m and all(x is not None for x in m):
        return f", plus {sum(m):.1f} min drawing the data set" + ("s" if len(m) > 1 else "") + \
            f": {sum(m) + train.get('total_minutes', 0):.1f} min from nothing to shipped weights"
    return ", plus a few minutes per stage to draw its data set"


def _verifier_line(res: dict) -> str:
    v = res.get("verifier")
    if not v:
        return "- No text verifier: the figures below are the detector's alone.\n"
    p = v["policy"]
    return (f"- Text verifier (`models/verifier/{v['weights']}`, sha256 `{v['sha256'][:16]}...`, see its card): a small CNN reads\n"
            f"  each line's own crop and drops it when P(no text) >= {p['drop_none']}, leaves a PHI line visible as annotation\n"
            f"  only when P(annotation) >= {p['phi_to_annotation']}, and seals an annotation line as PHI when P(phi) >= "
            f"{p['annotation_to_phi']}. Every figure below includes it.\n")


def write_card(res: dict) -> None:
    train = json.loads((OUT / "training.json").read_text()) if (OUT / "training.json").exists() else {}
    h, l = res["heldout"], res["heldout_large_2000_3000px_text_18_20px"]
    stages = "\n".join(f"  {n}. `{st['command']}` on {st['device']}: {st['n_train']} training tiles (data seed "
                       f"{st.get('data_seed', 1)}), {st['n_val']} validation tiles, imgsz {st['imgsz']}, {st['minutes']} min"
                       for n, st in enumerate(train.get("stages", []), start=1))
    thresholds = "\n".join(
        f"| {c} | {v['heldout']['recall_iou50']:.3f} / {v['heldout']['precision_iou50']:.3f} / {v['heldout']['ink_line_recall']:.3f} "
        f"| {v['large']['recall_iou50']:.3f} / {v['large']['precision_iou50']:.3f} / {v['large']['ink_line_recall']:.3f} |"
        for c, v in res.get("thresholds", {}).items())
    rows = "\n".join(f"| {r['file']} | {r['modality']} | {r['size']} | {r['phi_boxes']} | {r['annotation_boxes']} | {r['render']} |"
                     for r in res["real_samples"])
    (OUT / "MODEL_CARD.md").write_text(f"""# MedShield sensitive-text detector (YOLOv8n)

Finds burned-in patient text (class `phi`: names, ids/MRNs, accession numbers, dates and times,
age/sex tags, institutions) and non-identifying annotation text (class `annotation`: laterality,
views, technique values, scale marks) in medical images. Built from `yolov8n.yaml` (no
downloaded weights), trained offline by this repository.

- Weights: `medshield-text-yolov8n.pt` (PyTorch), `medshield-text-yolov8n.onnx` (ONNX, dynamic
  input); sha256 of the .pt: `{res['weights_sha256']}`
- Input: 8-bit views (12/16-bit images are windowed first), 416 px. Inference (`core/ml/detector.py`):
  a whole-image pass (plus one at 832 px for images up to 520 px, whose smallest text the 416-px pass
  shrinks) and, for larger images, native-resolution 416-px tiles (overlap 128). A tile box touching
  a border shared with a neighbouring tile is kept only when another pass saw text there too (phantoms
  at tile borders), and is dropped when another pass drew the whole line around it (the strip a
  border cut off); on tiled images the whole-image pass's small boxes, and its boxes drawn around a
  block of lines, stretch only tile boxes on their very line and stand only where no tile saw text;
  NMS grows the kept box along its line over the boxes it suppresses; pieces of one line are merged; an
  `annotation` box (kept visible by default) below 0.5 confidence is sealed as PHI; each box grows by
  12% of its height (35% more at the line's ends).
{_verifier_line(res)}- Training ({train.get('total_minutes', '?')} min of training in all on 2 CPU cores{_data_minutes(train)}), evaluation
  `python scripts/eval_detector.py`:
{stages}

## Data and licences
Synthetic text (Faker values; fonts DejaVu and Liberation for training, FreeFont, Liberation Serif and
DejaVu Serif held out for evaluation) drawn onto real images:
- `cxr-lung-seg` chest X-rays (NLM Shenzhen and Montgomery sets; research use, cite Jaeger et al. 2014).
  Only the images are used, not the Shenzhen masks (CC BY-NC-SA), so no non-commercial condition applies.
- `kermany-cxr-224` chest X-rays (CC BY 4.0, Kermany et al., Mendeley Data doi:10.17632/rscbjbr9sj.2), train split
  for training, test split for evaluation.
  Both X-ray sets carry their own burned-in text near the edges (R/L, PA/AP, "PA ERECT", times, KV60), which
  nobody labelled: only their inner parts are used, so real text is never taught, or scored, as background.
- Frames of the clean-modality DICOM samples (pydicom and pydicom-data, MIT; NEMA WG-04 samples).
- Synthetic ultrasound-like frames made by the script (speckled sector or linear fields on a black screen,
  depth ticks), where scanners put most of their text; text is drawn grey, white or in colour (yellow,
  green, cyan, orange), anti-aliased or jagged like bitmap scanner fonts, with and without a backing box,
  short stand-alone tags (`[M]`, `F/39`, `45y`), blur, noise and JPEG artefacts, at 8, 12 and 16 bits.
  Training images also carry varied annotation text (technique, window, series/image numbers, probe and
  Doppler settings, measurements, views) alone, in parameter columns and in blocks mixed with PHI; a line a
  training crop cuts keeps its visible piece labelled, as inference tiles cut lines.
Ultrasound samples, which carry real burned-in text, are kept out of training and used only for the renders below.

## Metrics (held-out fonts and seeds, conf {res['conf']}, IoU 0.5, class `phi`)
| set | images | PHI lines | recall | precision | coverage recall | ink line recall | ink pixels sealed | median ms/image (CPU) |
|---|---|---|---|---|---|---|---|---|
| whole images 300-1800 px | {h['images']} | {h['phi_lines']} | {h['recall_iou50']:.3f} | {h['precision_iou50']:.3f} | {h['coverage_recall']:.3f} | {h['ink_line_recall']:.3f} | {h['ink_pixels_sealed']:.3f} | {h['median_ms_per_image']:.0f} |
| 2000-3000 px, text 18-20 px | {l['images']} | {l['phi_lines']} | {l['recall_iou50']:.3f} | {l['precision_iou50']:.3f} | {l['coverage_recall']:.3f} | {l['ink_line_recall']:.3f} | {l['ink_pixels_sealed']:.3f} | {l['median_ms_per_image']:.0f} |

Recall and precision match each of the model's boxes (before the sealing margin) to one drawn line at IoU 0.5. Coverage recall counts a
PHI line as caught when sealed boxes cover at least 90% of its box; ink line recall when they cover
99% of the line's own text pixels (what a reader could still see, whatever the box shapes: a line
sealed as two boxes counts); ink pixels sealed is the share of all PHI text pixels under a seal.
Goal: recall >= 0.99, precision >= 0.95.

Other confidence thresholds (`MEDSHIELD_DETECTOR_CONF`; recall / precision / ink line recall):
| conf | whole images | 2000-3000 px |
|---|---|---|
{thresholds}

## Real burned-in samples (renders: red = phi, green = annotation)
| file | modality | size | phi boxes | annotation boxes | render |
|---|---|---|---|---|---|
{rows}

## Limits
Synthetic text only; no real annotated PHI was available for training. Technicians review every
proposal on the canvas before sealing; batch protection trusts the detector alone.
""")


if __name__ == "__main__":
    sys.exit(main())
