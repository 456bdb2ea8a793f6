"""The training scripts, run for real on tiny data sets the test writes in the same layouts as
../shared/data (which the tests never need): they see what the app sees, train, and write
weights the app's loaders accept, with metrics and a model card."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.ml import classifier, segmenter

ROOT = Path(__file__).resolve().parent.parent


def _xray(rng, sick: bool, size: int = 64) -> np.ndarray:
    arr = rng.normal(90, 20, (size, size))
    arr[:, : size // 3] += 40  # not symmetric: a transposed load would differ
    if sick:
        arr[size // 3: size // 2, size // 2:] = 230
    return arr.clip(0, 255).astype(np.uint8)


def test_script_loader_is_the_app_preprocessing(tmp_path):
    sys.path.insert(0, str(ROOT))
    from scripts.train_classifier import load_images

    arr = _xray(np.random.default_rng(0), True, 80)[:, :60]  # not square: rows stay rows
    p = tmp_path / "a.png"
    Image.fromarray(arr).save(p)
    ours = load_images([str(p)], 48)[0]
    app = classifier.preprocess(np.asarray(Image.open(p).convert("L")), size=48)[0]
    assert torch.equal(ours, app)


def test_classifier_script_trains_and_ships_a_loadable_model(tmp_path):
    data = tmp_path / "cxr"
    rng = np.random.default_rng(1)
    rows = []
    for split, n in (("train", 24), ("test", 8)):
        for k in range(n):
            cls = k % 2
            rel = f"dataset/{split}/{'PNEUMONIA' if cls else 'NORMAL'}/{k}.png"
            (data / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_xray(rng, bool(cls))).save(data / rel)
            rows.append({"path": rel, "split": split, "class": "PNEUMONIA" if cls else "NORMAL", "label": cls})
    with open(data / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "split", "class", "label"])
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "out"
    subprocess.run([sys.executable, "scripts/train_classifier.py", "--dataset", "cxr", "--data", str(data), "--epochs", "2",
                    "--size", "32", "--batch", "8", "--out", str(out)], cwd=ROOT, check=True, timeout=600)
    metrics = json.loads((out / "cxr-resnet18.json").read_text())
    assert metrics["test"]["n"] == 8 and len(metrics["history"]) == 2 and 0 <= metrics["test"]["auc"] <= 1
    assert set(metrics["test"]["confusion"]) == {"tn", "fp", "fn", "tp"} and len(metrics["test"]["auc_ci95"]) == 2
    assert "AUC (95% bootstrap CI)" in (out / "cxr-resnet18.md").read_text()
    model, classes, size, arch = classifier.load.__wrapped__(str(out / "cxr-resnet18.pt"))
    assert classes == ("NORMAL", "PNEUMONIA") and size == 32 and arch == "resnet18"
    ckpt = torch.load(out / "cxr-resnet18.pt", weights_only=True)
    assert ckpt["state_dict"]["fc.1.weight"].dtype == torch.float16  # shipped at half size


def test_segmenter_script_reports_test_split_apart_from_validation(tmp_path):
    data = tmp_path / "seg"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    rng = np.random.default_rng(2)
    rows = []
    for k in range(20):
        img = rng.normal(60, 10, (64, 64))
        mask = np.zeros((64, 64), np.uint8)
        y, x = rng.integers(10, 30, 2)
        mask[y:y + 24, x:x + 20] = 255
        img[mask > 0] += 120
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(data / "images" / f"MCUCXR_{k:04d}_0.jpg")
        Image.fromarray(mask).save(data / "masks" / f"MCUCXR_{k:04d}_0.png")
        rows.append({"image": f"images/MCUCXR_{k:04d}_0.jpg", "mask": f"masks/MCUCXR_{k:04d}_0.png",
                     "source": "Montgomery", "tb_label": 0})
    with open(data / "pairs.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["image", "mask", "source", "tb_label"])
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "out"
    subprocess.run([sys.executable, "scripts/train_segmenter.py", "--data", str(data), "--epochs", "2", "--size", "32",
                    "--batch", "4", "--out", str(out), "--montgomery-only"], cwd=ROOT, check=True, timeout=600)
    m = json.loads((out / "lung-residual-unet-montgomery.json").read_text())
    assert (m["train_pairs"], m["val_pairs"], m["test_pairs"]) == (14, 2, 4)
    assert 0 <= m["test"]["dice"] <= 1 and m["test_full_resolution"]["n"] == 4
    assert "research use" in m["licence"]
    model, size, variant = segmenter.load.__wrapped__(str(out / "lung-residual-unet-montgomery.pt"))
    assert size == 32 and variant == "residual-unet"


def test_text_verifier_script_trains_and_ships_a_loadable_model(tmp_path):
    """With no data root (only the script's own ultrasound-like frames) and a few images: the crops
    are drawn, labelled, the network trained, and its weights load in the app's verifier."""
    from core.ml import textverify

    out, cache = tmp_path / "out", tmp_path / "cache"
    cmd = [sys.executable, "scripts/train_text_verifier.py", "--data-root", str(tmp_path / "no-data"), "--n-images", "14",
           "--epochs", "1", "--out", str(out), "--cache", str(cache)]
    subprocess.run(cmd, cwd=ROOT, check=True, timeout=600)
    info = json.loads((out / "training.json").read_text())
    assert info["images"] == 14 and info["crops"] == sum(info["crops_per_label"]) > 14
    assert all(n > 0 for n in info["crops_per_label"])  # lines of both kinds and text-free boxes
    assert len(info["history"]) == 1 and sum(map(sum, info["validation"]["confusion_rows_true_cols_pred"])) > 0
    assert "Accuracy" in (out / "MODEL_CARD.md").read_text()
    assert list(cache.glob("crops-v*.npz"))  # kept for a rerun
    model = textverify.load.__wrapped__(str(out / "medshield-text-verifier.pt"))
    img = np.zeros((100, 300), np.uint8)
    p = textverify.probabilities(model, img, [(10, 10, 200, 30)])
    assert p.shape == (1, 3) and abs(float(p.sum()) - 1) < 1e-5
