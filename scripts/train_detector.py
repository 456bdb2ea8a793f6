"""Train the sensitive-text detector (YOLOv8n from its yaml, no downloaded weights), fully
offline, and ship it under models/detector/ with an ONNX export and a model card.

    .venv/bin/python scripts/train_detector.py [--epochs 9] [--n-train 4000] [--time-hours 1.33] [--device auto]

The defaults are the shipped run (about 85 min on 2 CPU cores: 5 drawing the data, 80 training).
Resumes an interrupted run (data/detector/runs/train/weights/last.pt). Builds its data set once
under data/detector/ds-v<DATA_VERSION>-... from ../shared/data (see scripts/detector_data.py).
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
DATA_VERSION = 3  # bump when scripts/detector_data.py or core/ml/synth.py draw differently (a new data set is built)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--epochs", type=int, default=9)
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-val", type=int, default=100)
    ap.add_argument("--imgsz", type=int, default=416)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--time-hours", type=float, default=1.33, help="ultralytics stops training after this")
    ap.add_argument("--fine-tune", default=None, help="continue from these weights (a second stage on a new data set)")
    ap.add_argument("--seed", type=int, default=1, help="data-set seed (a second stage uses another one)")
    ap.add_argument("--lr0", type=float, default=None)
    ap.add_argument("--warmup-epochs", type=float, default=1.0)
    ap.add_argument("--out", default=str(OUT), help="where the weights, ONNX export and training log go")
    args = ap.parse_args()
    out = Path(args.out)
    YOLO = yolo_env.import_yolo(WORK / "yolo-config")  # offline, and on every core
    import torch

    device = ("0" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    ds = WORK / f"ds-v{DATA_VERSION}-seed{args.seed}-n{args.n_train}-{args.imgsz}"
    if not (ds / "data.yaml").exists():
        t = time.time()
        root = Path(args.data_root)
        write_yolo_split(ds, "train", backgrounds(root, "train", 900, args.seed), args.n_train, args.seed, TRAIN_FONTS, args.imgsz)
        write_yolo_split(ds, "val", backgrounds(root, "val", 300, 2), args.n_val, 2, TRAIN_FONTS, args.imgsz)
        (ds / "data.yaml").write_text(json.dumps({"path": str(ds), "train": "images/train", "val": "images/val",
                                                   "names": {i: n for i, n in enumerate(CLASSES)}}))
        (ds / "built.json").write_text(json.dumps({"minutes": round((time.time() - t) / 60, 1)}))
        print(f"data set built in {time.time() - t:.0f} s", flush=True)
    run = "train" if not args.fine_tune else f"finetune-seed{args.seed}"
    last = WORK / "runs" / run / "weights" / "last.pt"
    started = time.time()
    common = dict(data=str(ds / "data.yaml"), imgsz=args.imgsz, epochs=args.epochs, batch=args.batch,
                  device=device, workers=2, plots=False, amp=device != "cpu", project=str(WORK / "runs"), name=run,
                  exist_ok=True, patience=8, seed=0, fliplr=0.0, degrees=0.0, scale=0.3, translate=0.1, mosaic=1.0,
                  close_mosaic=2, time=args.time_hours, verbose=False, cache="ram")
    if last.exists() and _unfinished(last):
        print("resuming", last, flush=True)
        YOLO(str(last)).train(resume=True)
    elif args.fine_tune:
        # keep the starting weights (pretrained=True) and skip the bias warm-up, whose high
        # learning rate would wreck them
        YOLO(args.fine_tune).train(pretrained=True, warmup_epochs=0, lr0=args.lr0 or 0.003, **common)
    else:
        YOLO("yolov8n.yaml").train(pretrained=False, warmup_epochs=args.warmup_epochs,
                                   **({"lr0": args.lr0} if args.lr0 else {}), **common)
    minutes = (time.time() - started) / 60
    best = WORK / "runs" / run / "weights" / "best.pt"
    out.mkdir(parents=True, exist_ok=True)
    target = out / "medshield-text-yolov8n.pt"
    shutil.copyfile(best, target)
    onnx = YOLO(str(target)).export(format="onnx", imgsz=args.imgsz, dynamic=True, simplify=True)
    shutil.move(onnx, out / "medshield-text-yolov8n.onnx")
    log = out / "training.json"
    prev = json.loads(log.read_text()) if (args.fine_tune and log.exists()) else {}
    stages = prev.get("stages") or ([{"command": prev["command"], "device": prev.get("device"), "epochs": prev.get("epochs"),
                                      "n_train": prev.get("n_train"), "n_val": prev.get("n_val"), "imgsz": prev.get("imgsz"),
                                      "data_seed": 1, "minutes": prev.get("train_minutes_this_run")}] if "command" in prev else [])
    stages.append({"command": "python scripts/train_detector.py " + " ".join(sys.argv[1:]), "device": device,
                   "epochs": args.epochs, "n_train": args.n_train, "n_val": args.n_val, "imgsz": args.imgsz,
                   "data_seed": args.seed, "minutes": round(minutes, 1),
                   "data_minutes": json.loads((ds / "built.json").read_text())["minutes"] if (ds / "built.json").exists() else None})
    log.write_text(json.dumps({"stages": stages, "total_minutes": round(sum(x["minutes"] for x in stages), 1)}, indent=2))
    print(f"trained in {minutes:.1f} min on {device}; weights in {out}", flush=True)
    return 0


def _unfinished(last: Path) -> bool:
    """An interrupted run (resumable) rather than one that ended."""
    import torch

    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
    except Exception:
        return False
    return ckpt.get("optimizer") is not None and int(ckpt.get("epoch", -1)) >= 0


if __name__ == "__main__":
    sys.exit(main())
