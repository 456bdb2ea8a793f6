"""Train the sensitive-text detector (YOLOv8n from its yaml, no downloaded weights), fully
offline, and ship it under models/detector/ with an ONNX export and a model card.

    .venv/bin/python scripts/train_detector.py [--epochs 30] [--n-train 1200] [--device auto]

Resumes an interrupted run (data/detector/runs/train/weights/last.pt). Builds its data set once
under data/detector/ds from ../shared/data (see scripts/detector_data.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.ml import yolo_env  # noqa: E402
from core.ml.synth import CLASSES, TRAIN_FONTS  # noqa: E402
from scripts.detector_data import backgrounds, write_yolo_split  # noqa: E402

OUT = ROOT / "models" / "detector"
WORK = ROOT / "data" / "detector"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--n-train", type=int, default=1200)
    ap.add_argument("--n-val", type=int, default=200)
    ap.add_argument("--imgsz", type=int, default=416)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--time-hours", type=float, default=1.25, help="ultralytics stops training after this")
    args = ap.parse_args()
    yolo_env.configure(WORK / "yolo-config")
    import torch
    from ultralytics import YOLO

    device = ("0" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    ds = WORK / "ds"
    if not (ds / "data.yaml").exists():
        t = time.time()
        root = Path(args.data_root)
        write_yolo_split(ds, "train", backgrounds(root, "train", 900, 1), args.n_train, 1, TRAIN_FONTS, args.imgsz)
        write_yolo_split(ds, "val", backgrounds(root, "val", 300, 2), args.n_val, 2, TRAIN_FONTS, args.imgsz)
        (ds / "data.yaml").write_text(json.dumps({"path": str(ds), "train": "images/train", "val": "images/val",
                                                   "names": {i: n for i, n in enumerate(CLASSES)}}))
        print(f"data set built in {time.time() - t:.0f} s", flush=True)
    last = WORK / "runs" / "train" / "weights" / "last.pt"
    started = time.time()
    if last.exists():
        print("resuming", last, flush=True)
        YOLO(str(last)).train(resume=True)
    else:
        model = YOLO("yolov8n.yaml")
        model.train(data=str(ds / "data.yaml"), imgsz=args.imgsz, epochs=args.epochs, batch=args.batch,
                    device=device, workers=2, pretrained=False, plots=False, amp=device != "cpu",
                    project=str(WORK / "runs"), name="train", exist_ok=True, patience=8, seed=0,
                    fliplr=0.0, degrees=0.0, scale=0.3, translate=0.1, mosaic=1.0, close_mosaic=3,
                    time=args.time_hours, verbose=False)
    minutes = (time.time() - started) / 60
    best = WORK / "runs" / "train" / "weights" / "best.pt"
    OUT.mkdir(parents=True, exist_ok=True)
    target = OUT / "medshield-text-yolov8n.pt"
    shutil.copyfile(best, target)
    onnx = YOLO(str(target)).export(format="onnx", imgsz=args.imgsz, dynamic=True, simplify=True)
    shutil.move(onnx, OUT / "medshield-text-yolov8n.onnx")
    (OUT / "training.json").write_text(json.dumps({
        "command": "python scripts/train_detector.py " + " ".join(sys.argv[1:]), "device": device,
        "epochs": args.epochs, "n_train": args.n_train, "n_val": args.n_val, "imgsz": args.imgsz,
        "train_minutes_this_run": round(minutes, 1)}, indent=2))
    print(f"trained in {minutes:.1f} min on {device}; weights in {OUT}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
