"""Evaluate the burned-in PHI pipeline (both detectors, reading, decision, sealing) and write its card.

1. Synthetic held-out set (scripts/phi_eval_data.py: fonts, seeds and backgrounds never used to train or
   tune): per-line recall and precision at IoU >= 0.5 for PHI lines, the share of PHI ink pixels
   sealed, lines whose ink is >= 99% sealed, technical lines left visible, and the time per image
   (decode + both detectors + decide + seal), for 300-1800 px and 2000-3000 px images.
2. The OCR adversary (scripts/ocr_adversary.py, tesseract) on protected outputs: synthetic images (the
   PHI tokens each one carries) and every real DICOM with burned-in text available offline
   (scripts/real_phi_labels.json, plus the header's own PHI values).

    .venv/bin/python scripts/eval_phi.py [--n 150] [--n-large 30] [--adversary 40] [--out models/phi]
    .venv/bin/python scripts/eval_phi.py --tune   # a development set (training fonts, other seeds)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.crypto.keys import new_data_key  # noqa: E402
from core.crypto.masking import apply_mask  # noqa: E402
from core.crypto.sealing import cipher, seal_regions  # noqa: E402
from core.imaging.decode import decode_image  # noqa: E402
from core.imaging.display import encode_png, to_display_uint8  # noqa: E402
from core.imaging.phitext import HeaderValues  # noqa: E402
from core.ml import detector, ocr, phidetect, textverify  # noqa: E402
from scripts import ocr_adversary  # noqa: E402
from scripts.detector_data import backgrounds  # noqa: E402
from scripts.eval_detector import iou, match  # noqa: E402,F401
from scripts.phi_eval_data import TUNE_FONTS, build  # noqa: E402

LABELS = ROOT / "scripts" / "real_phi_labels.json"


def protect_view(view: np.ndarray, png: bytes, model, verifier, engine, policy: phidetect.Policy,
                 header: HeaderValues | None = None):
    """The protect path on one image, timed: decode the stored file, both detectors, decide, seal the
    regions with AES-GCM and mask them. Returns (regions, masked view, ms)."""
    t = time.perf_counter()
    dec = decode_image(png)
    pixels = np.array(dec.pixels)
    regions = phidetect.find(to_display_uint8(pixels, photometric=dec.photometric, frames=dec.frames), model=model,
                             verifier=verifier, engine=engine, header=header, policy=policy)
    boxes = [r.box for r in regions if r.cls == "phi"]
    seal_regions(cipher(new_data_key()), 1, pixels, boxes, 1)
    for b in boxes:
        apply_mask(pixels, b, "solid", 1)
    return regions, pixels, (time.perf_counter() - t) * 1e3


def score_synthetic(samples, model, verifier, engine, policy, adversary_n: int = 0, label: str = "") -> dict:
    acc = dict(tp=0, fp=0, fn=0, ink_t=0, ink_h=0, ink_lines=0, lines=0, ann=0, ann_visible=0, times=[],
               adv_before=0, adv_after=0, adv_tokens=0, adv_images=0, reasons={})
    misses = []
    for k, s in enumerate(samples):
        h, w = s.image.shape[:2]
        png = encode_png(s.image)
        regions, masked, ms = protect_view(s.image, png, model, verifier, engine, policy)
        acc["times"].append(ms)
        sealed = [r for r in regions if r.cls == "phi"]
        for r in sealed:
            acc["reasons"][r.reason.split(":")[0]] = acc["reasons"].get(r.reason.split(":")[0], 0) + 1
        gt = [ln for ln in s.lines if ln.cls == "phi"]
        tp, fp, fn = match([((r.line.x0, r.line.y0, r.line.x1, r.line.y1), r.confidence) for r in sealed],
                           [g.box for g in gt])
        acc["tp"], acc["fp"], acc["fn"] = acc["tp"] + tp, acc["fp"] + fp, acc["fn"] + fn
        mask = np.zeros((h, w), bool)
        for r in sealed:
            mask[r.box.y0:r.box.y1, r.box.x0:r.box.x1] = True
        for g in gt:
            n, hit = int(g.ink.sum()), int((g.ink & mask).sum())
            acc["lines"] += 1
            acc["ink_t"], acc["ink_h"] = acc["ink_t"] + n, acc["ink_h"] + hit
            full = n == 0 or hit >= 0.99 * n
            acc["ink_lines"] += full
            if not full:
                misses.append({"image": k, "text_height": g.box[3] - g.box[1], "sealed": round(hit / max(1, n), 3),
                               "size": f"{w}x{h}"})
        for a in (ln for ln in s.lines if ln.cls == "annotation"):
            n = int(a.ink.sum())
            acc["ann"] += 1
            acc["ann_visible"] += n == 0 or int((a.ink & mask).sum()) <= 0.1 * n
        if k < adversary_n and ocr_adversary.available():
            phi_tokens = set().union(*[ocr_adversary.tokens(g.text) for g in gt]) if gt else set()
            before = ocr_adversary.readable(phi_tokens, ocr_adversary.read_tokens(s.image, strong=False))
            after = ocr_adversary.readable(phi_tokens, ocr_adversary.read_tokens(masked, strong=False))
            acc["adv_images"] += 1
            acc["adv_tokens"] += len(phi_tokens)
            acc["adv_before"] += len(before)
            acc["adv_after"] += len(after)
        if (k + 1) % 25 == 0:
            print(f"  {label} {k + 1}/{len(samples)}", flush=True)
    tp, fp, fn = acc["tp"], acc["fp"], acc["fn"]
    out = {"images": len(samples), "phi_lines": acc["lines"], "recall_iou50": tp / max(1, tp + fn),
           "precision_iou50": tp / max(1, tp + fp), "ink_pixels_sealed": acc["ink_h"] / max(1, acc["ink_t"]),
           "ink_line_recall": acc["ink_lines"] / max(1, acc["lines"]),
           "technical_lines_left_visible": acc["ann_visible"] / max(1, acc["ann"]),
           "median_ms_per_image": float(np.median(acc["times"])), "p90_ms_per_image": float(np.percentile(acc["times"], 90)),
           "reasons": acc["reasons"], "misses": misses[:40]}
    if acc["adv_images"]:
        out["adversary"] = {"images": acc["adv_images"], "phi_tokens": acc["adv_tokens"],
                            "readable_before": acc["adv_before"], "readable_after": acc["adv_after"]}
    return out


def real_files(data_root: Path) -> list[tuple[str, Path]]:
    labels = json.loads(LABELS.read_text())
    out = []
    for rel in labels:
        if rel.startswith("_"):
            continue
        if rel.startswith("octave-dicom/"):
            p = ROOT / "data" / "eval-dicoms" / rel
        else:
            p = data_root / "dicom-samples" / rel
        if p.exists():
            out.append((rel, p))
    return out


def header_tokens(hv: HeaderValues, ds) -> set[str]:
    toks: set[str] = set()
    for kw in ("PatientName", "PatientID", "OtherPatientIDs", "AccessionNumber", "InstitutionName",
               "ReferringPhysicianName", "StationName", "PatientBirthDate"):
        v = ds.get(kw)
        if v:
            toks |= ocr_adversary.tokens(str(v).replace("^", " "))
    return {t for t in toks if t not in {"ANONYMIZED", "NAME", "PATIENT", "INFO", "NOT", "CONNECTED"}}


def score_real(data_root: Path, model, verifier, engine, out_dir: Path, strong: bool = True) -> list[dict]:
    import pydicom

    labels = json.loads(LABELS.read_text())
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    rows = []
    for rel, p in real_files(data_root):
        data = p.read_bytes()
        dec = decode_image(data)
        ds = pydicom.dcmread(p, force=True, stop_before_pixels=True)
        hv = HeaderValues.from_dataset(ds)
        view = to_display_uint8(dec.pixels, photometric=dec.photometric, frames=dec.frames)
        t = time.perf_counter()
        regions = phidetect.find(view, model=model, verifier=verifier, engine=engine, header=hv)
        ms = (time.perf_counter() - t) * 1e3
        masked = np.array(view)
        for r in regions:
            if r.cls == "phi":
                apply_mask(masked, r.box, "solid", 1)
        phi = set().union(*[ocr_adversary.tokens(x) for x in labels[rel]]) if labels[rel] else set()
        phi |= header_tokens(hv, ds)
        row = {"file": rel, "modality": dec.modality, "size": f"{dec.cols}x{dec.rows}", "frames": dec.frames,
               "sealed": sum(r.cls == "phi" for r in regions), "visible": sum(r.cls == "annotation" for r in regions),
               "reasons": sorted({r.reason for r in regions if r.cls == "phi"}), "ms": round(ms, 1),
               "phi_tokens": len(phi)}
        if ocr_adversary.available():
            before = ocr_adversary.readable(phi, ocr_adversary.read_tokens(view, strong=strong))
            after = ocr_adversary.readable(phi, ocr_adversary.read_tokens(masked, strong=strong))
            row.update({"readable_before": len(before), "readable_after": len(after),
                        "after_tokens_count": len(after)})
        im = Image.fromarray(view).convert("RGB")
        d = ImageDraw.Draw(im)
        for r in regions:
            d.rectangle((r.box.x0, r.box.y0, r.box.x1, r.box.y1), outline=(255, 40, 40) if r.cls == "phi" else (40, 220, 40),
                        width=2)
        name = Path(rel).stem + ".jpg"
        im.save(out_dir / "samples" / name, quality=80)
        row["render"] = f"samples/{name}"
        rows.append(row)
        print(f"  {rel}: {row}", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--n-large", type=int, default=30)
    ap.add_argument("--adversary", type=int, default=40, help="synthetic images per band the adversary reads")
    ap.add_argument("--baselines", action="store_true", help="also score YOLO alone and the OCR detector alone")
    ap.add_argument("--tune", action="store_true", help="a development set: training fonts, seeds 101/102")
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "models" / "phi"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(args.data_root)
    subprocess.run(["bash", str(ROOT / "scripts" / "fetch_eval_dicoms.sh")], check=False)
    model, verifier, engine = detector.load(), textverify.load(), ocr.load()
    bgs = backgrounds(root, "val", 400, 3)
    seeds = {"small": 101, "large": 102} if args.tune else {"small": None, "large": None}
    fonts = TUNE_FONTS if args.tune else None
    sets = {"small": build(bgs, args.n, "small", seeds["small"], fonts),
            "large": build(bgs, args.n_large, "large", seeds["large"], fonts)}
    res: dict = {"command": " ".join(["scripts/eval_phi.py"] + sys.argv[1:]), "set": "tune" if args.tune else "heldout",
                 "policy": "default (technical lines visible)"}
    t0 = time.perf_counter()
    for band, samples in sets.items():
        print(f"scoring {band} ({len(samples)} images)", flush=True)
        res[band] = score_synthetic(samples, model, verifier, engine, phidetect.Policy(), args.adversary, band)
        if args.baselines:
            res[f"{band}_yolo_only"] = score_synthetic(samples, model, verifier, engine,
                                                       phidetect.Policy(use_ocr=False), 0, band + " yolo")
            res[f"{band}_ocr_only"] = score_synthetic(samples, model, verifier, engine,
                                                      phidetect.Policy(use_yolo=False), 0, band + " ocr")
    if not args.no_real:
        res["real"] = score_real(root, model, verifier, engine, out)
    res["minutes"] = (time.perf_counter() - t0) / 60
    name = "metrics-tune.json" if args.tune else "metrics.json"
    (out / name).write_text(json.dumps(res, indent=2))
    for band in sets:
        r = res[band]
        print(f"{band}: recall {r['recall_iou50']:.3f} precision {r['precision_iou50']:.3f} ink {r['ink_pixels_sealed']:.4f} "
              f"ink lines {r['ink_line_recall']:.3f} visible tech {r['technical_lines_left_visible']:.3f} "
              f"median {r['median_ms_per_image']:.0f} ms adversary {r.get('adversary')}")
    if "real" in res:
        print("real:", sum(r.get("readable_after", 0) for r in res["real"]), "PHI tokens readable after protection;",
              sum(r.get("readable_before", 0) for r in res["real"]), "before")
    return 0


if __name__ == "__main__":
    sys.exit(main())
