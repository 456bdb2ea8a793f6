"""`protect` over a folder of mixed files as a user runs it (a fresh data directory, the real CLI in its own
process): images/s and peak RSS from its report.json. 200 files by default: PNG, JPEG and DICOM (8- and
16-bit, some multi-frame) with burned-in text drawn on real anatomy (the PHI evaluation's generator).

    .venv/bin/python -m bench.bench_batch [--n 200]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from core.config import PROJECT_ROOT


def _dicom(img: np.ndarray, k: int, frames: int = 1) -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    grey = img if img.ndim == 2 else img.max(axis=2)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName, ds.StudyDate, ds.Modality = f"BENCH{k:05d}", f"BENCH^PATIENT{k}", "20240101", "OT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    deep = k % 2 == 0
    arr = (grey.astype(np.uint16) * 16) if deep else grey
    if frames > 1:
        arr = np.stack([arr] * frames)
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = grey.shape[0], grey.shape[1], 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored = (16, 12) if deep else (8, 8)
    ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, 0
    ds.PixelData = np.ascontiguousarray(arr).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    from scripts.detector_data import backgrounds
    from scripts.phi_eval_data import build

    bgs = backgrounds(PROJECT_ROOT.parent / "shared" / "data", "val", 200, 3)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        src = t / "in"
        src.mkdir()
        images = build(bgs, args.n, "small", seed=77)
        for k, e in enumerate(images):
            kind = k % 4
            if kind == 0:
                Image.fromarray(e.image).save(src / f"{k:04d}.png")
            elif kind == 1:
                Image.fromarray(e.image).convert("RGB").save(src / f"{k:04d}.jpg", quality=90)
            else:
                (src / f"{k:04d}.dcm").write_bytes(_dicom(e.image, k, frames=3 if kind == 3 and k % 8 == 3 else 1))
        env = dict(os.environ, MEDSHIELD_DATA_DIR=str(t / "data"), MEDSHIELD_ADMIN_PASSWORD="bench-admin-pass",
                   MEDSHIELD_QUIET_BOOTSTRAP="1", MEDSHIELD_2FA_ROLES="", MEDSHIELD_BCRYPT_ROUNDS="4")
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        py = sys.executable
        subprocess.run([py, "-m", "core.cli", "init"], env=env, check=True, cwd=PROJECT_ROOT, capture_output=True)
        subprocess.run([py, "-m", "core.cli", "create-user", "--user", "admin", "bench", "Bench Tech", "technician"],
                       env=dict(env, MEDSHIELD_PASSWORD="bench-admin-pass", MEDSHIELD_NEW_PASSWORD="bench-tech-pass"),
                       check=True, cwd=PROJECT_ROOT, capture_output=True)
        subprocess.run([py, "-c", "from core.runtime import get_runtime; from core.db.models import User; from sqlmodel import select\n"
                        "rt = get_runtime()\nwith rt.session() as s:\n    u = s.exec(select(User).where(User.username == 'bench')).one()\n"
                        "    u.must_change_password = False; s.add(u)"], env=env, check=True, cwd=PROJECT_ROOT)
        r = subprocess.run([py, "-m", "core.cli", "protect", "--quiet", "--user", "bench", "--out", str(t / "out"), str(src)],
                           env=dict(env, MEDSHIELD_PASSWORD="bench-tech-pass"), cwd=PROJECT_ROOT, capture_output=True, text=True)
        report = json.loads((t / "out" / "report.json").read_text())
    ok = report["ok"]
    print(f"protect over {len(images)} mixed files (PNG, JPEG, 8/16-bit and multi-frame DICOM): {ok} protected, "
          f"{report['failed']} failed, {report['images_per_s']:.2f} images/s, {report['seconds']:.0f} s, "
          f"peak RSS {report['peak_rss_mb']:.0f} MB (exit {r.returncode})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
