"""Build the demo set shipped in assets/demo/ (run once by a developer; the product only reads it).

Real public images with FAKE patient text burned in (names, IDs and dates made up here, not anyone's):
two paediatric chest X-rays (Kermany et al., CC BY 4.0), one breast ultrasound (BUSI via BreastMNIST,
CC BY 4.0) and one CT slice from pydicom's test data (MIT) as DICOM with a matching fake header.

    .venv/bin/python scripts/make_demo.py [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "assets" / "demo"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
PEOPLE = [("MORGAN^ALEX", "DEMO-4471902", "19610724"), ("RIVERA^SAM", "DEMO-8802113", "20190311"),
          ("OKAFOR^JAMIE", "DEMO-5530871", "19840209"), ("LINDQVIST^ROBIN", "DEMO-7311446", "19550117")]


def burn(img: Image.Image, lines: list[tuple[str, tuple[int, int]]], size: int) -> Image.Image:
    img = img.convert("L")
    d = ImageDraw.Draw(img)
    font = ImageFont.truetype(FONT, size)
    for text, xy in lines:
        d.text(xy, text, font=font, fill=255)
    return img


def fmt_date(da: str) -> str:
    return f"{da[6:]}/{da[4:6]}/{da[:4]}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    root = Path(ap.parse_args().data_root)
    OUT.mkdir(parents=True, exist_ok=True)
    cxr = sorted((root / "kermany-cxr-224" / "dataset" / "test" / "NORMAL").glob("*.jp*g"))[3]
    pneu = sorted((root / "kermany-cxr-224" / "dataset" / "test" / "PNEUMONIA").glob("*.jp*g"))[5]
    for n, (src, person) in enumerate([(cxr, PEOPLE[0]), (pneu, PEOPLE[1])], start=1):
        name, pid, dob = person
        im = Image.open(src).resize((448, 448), Image.Resampling.BICUBIC)
        im = burn(im, [(name.replace("^", " "), (8, 6)), (f"ID {pid}", (8, 24)), (f"DOB {fmt_date(dob)}", (8, 42)),
                       ("PA ERECT", (360, 424))], 15)
        im.save(OUT / f"demo-chest-{n}.png", optimize=True)
    us = np.load(root / "busi-breast-us-256" / "busi_breast_256.npz")
    frame = Image.fromarray(us["test_images"][7]).resize((512, 512), Image.Resampling.BICUBIC)
    name, pid, dob = PEOPLE[2]
    frame = burn(frame, [(f"{name.replace('^', ', ')}   {pid}   {fmt_date(dob)}", (6, 4)), ("LEFT BREAST", (380, 490)),
                         ("Depth 4cm", (440, 30))], 13)
    frame.save(OUT / "demo-breast-us.png", optimize=True)

    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    dtype = ds.pixel_array.dtype
    arr = ds.pixel_array.astype(np.int32)
    big = np.kron(arr, np.ones((3, 3), np.int32))  # 384 x 384, room for legible text
    name, pid, dob = PEOPLE[3]
    top = int(big.max())
    mask = np.asarray(burn(Image.new("L", big.shape[::-1], 0),
                           [(name.replace("^", " "), (6, 4)), (pid, (6, 20)), ("CITY GENERAL HOSPITAL", (200, 364))], 13)) > 96
    big[mask] = top
    ds.Rows, ds.Columns = big.shape
    ds.PixelData = big.astype(dtype).tobytes()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = name, pid, dob
    ds.InstitutionName, ds.BurnedInAnnotation = "City General Hospital", "YES"
    ds.PixelSpacing = [float(v) * 3 for v in ds.PixelSpacing] if "PixelSpacing" in ds else [1.0, 1.0]
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    (OUT / "demo-ct.dcm").write_bytes(buf.getvalue())
    print("demo set in", OUT, sum(p.stat().st_size for p in OUT.iterdir()) // 1024, "KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
