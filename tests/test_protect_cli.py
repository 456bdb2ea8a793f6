"""`python -m core.cli protect`: a folder of mixed files as a user would run it, bad files included,
the protected outputs checked as files (DICOM stays DICOM with new UIDs and a truthful
BurnedInAnnotation; PNG stays PNG), report.json, the dry run that stores nothing, and the OCR
adversary on the outputs."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pydicom
import pytest
from PIL import Image
from sqlmodel import func, select

from core.db.models import Image as ImageRow
from core.db.models import Region
from tests.conftest import admin_actor
from tests.fixtures import dicom_bytes, pydicom_file, zip_bytes
from tests.test_ocr import draw

PASSWORD = "long-enough-1"
NAME_LINE = "KOWALSKI ANNA"


def _dicom_with_text(path, patient_name="KOWALSKI^ANNA", patient_id="PX4471902") -> None:
    img = draw((360, 480), [(NAME_LINE, 12, 10, 20), (f"ID {patient_id}", 12, 40, 20), ("2019-06-14", 330, 10, 18),
                            ("kVp 120", 380, 330, 16)], bg=30)
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(8, 8, bits=8, patient_name=patient_name, patient_id=patient_id)))
    ds.Rows, ds.Columns = img.shape
    ds.PixelData = img.tobytes()
    ds.StudyDate = "20190614"
    ds.BurnedInAnnotation = "YES"
    ds.InstitutionName = "Saint Elsewhere Hospital"
    ds.save_as(path, enforce_file_format=True)


def _png(path, lines) -> None:
    Image.fromarray(draw((300, 400), lines)).save(path)


@pytest.fixture
def tech(sqlite_rt, monkeypatch):
    from core.services import users

    users.create_user(admin_actor(sqlite_rt), "clitech", "T", "technician", PASSWORD, must_change_password=False)
    monkeypatch.setenv("MEDSHIELD_PASSWORD", PASSWORD)
    return "clitech"


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    _dicom_with_text(d / "cr.dcm")
    _png(d / "sub" / "scan.png", [("NOWAK PIOTR 1961-07-24", 10, 10, 16)])
    (d / "series.zip").write_bytes(zip_bytes({"a.png": _png_bytes("SMITH JOHN"), "b.png": _png_bytes("DOE JANE")}))
    (d / "us-cine.dcm").write_bytes(pydicom_file("examples_ybr_color.dcm"))  # 30-frame JPEG baseline US
    (d / "mr-jpegls.dcm").write_bytes(pydicom_file("MR_small_jpeg_ls_lossless.dcm"))  # compressed, no text
    (d / "notes.txt").write_text("not an image")
    (d / "truncated.dcm").write_bytes(pydicom_file("CT_small.dcm")[:3000])
    (d / "traversal.zip").write_bytes(zip_bytes({"../../evil.png": _png_bytes("X")}))
    return d


def _png_bytes(text: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(draw((200, 300), [(text, 10, 10, 18)])).save(buf, format="PNG")
    return buf.getvalue()


def test_protect_a_folder(sqlite_rt, tech, inputs, tmp_path, capsys):
    from core import cli

    out = tmp_path / "out"
    code = cli.main(["protect", "--user", tech, "--out", str(out), str(inputs)], configure=False)
    captured = capsys.readouterr()
    assert code == 1  # three bad files: the batch went on past them and says so
    report = json.loads((out / "report.json").read_text())
    rows = {r["name"]: r for r in report["files"]}
    for bad, why in [("notes.txt", "text file"), ("truncated.dcm", "DICOM"), ("traversal.zip", "")]:
        assert rows[bad]["status"] == "rejected" and why in rows[bad]["error"], rows[bad]
    assert report["failed"] == 3 and "notes.txt: rejected" in captured.err
    ok = [r for r in report["files"] if r["status"] == "protected"]
    assert {r["name"] for r in ok} == {"cr.dcm", "sub/scan.png", "series.zip/a.png", "series.zip/b.png", "us-cine.dcm",
                                       "mr-jpegls.dcm"}
    assert all((out / r["output"]).is_file() and r["timings_ms"]["detect"] > 0 for r in ok)
    assert report["images_per_s"] > 0 and report["peak_rss_mb"] > 0
    assert not (tmp_path / "evil.png").exists() and not list(out.glob("*evil*"))

    cr = rows["cr.dcm"]
    reasons = {r["reason"] for r in cr["regions"]}
    assert {"header:PatientName", "header:PatientID", "header:StudyDate"} <= reasons, reasons
    ds = pydicom.dcmread(out / cr["output"])
    original = pydicom.dcmread(inputs / "cr.dcm")
    assert ds.BurnedInAnnotation == "NO" and ds.PatientIdentityRemoved == "YES"
    assert ds.SOPInstanceUID != original.SOPInstanceUID and ds.StudyInstanceUID != original.StudyInstanceUID
    assert "KOWALSKI" not in str(ds.get("PatientName", "")) and ds.get("InstitutionName", "") != original.InstitutionName
    px, ink = ds.pixel_array, original.pixel_array > 128
    assert ink[:70, :250].sum() > 300 and px[:70, :250][ink[:70, :250]].max() == 0  # name and ID lines sealed
    assert (px[320:360, 370:480] == original.pixel_array[320:360, 370:480]).all()  # "kVp 120": technical, visible

    cine = pydicom.dcmread(out / rows["us-cine.dcm"]["output"])
    assert int(cine.NumberOfFrames) == 30 and rows["us-cine.dcm"]["regions"]
    assert {r["frame"] for r in rows["us-cine.dcm"]["regions"]} == set(range(30))  # the banner sealed on every frame
    assert Image.open(out / rows["sub/scan.png"]["output"]).format == "PNG"
    with sqlite_rt.session() as s:
        assert s.exec(select(func.count()).select_from(ImageRow).where(ImageRow.status == "protected")).one() == 6
        stored = s.exec(select(Region.reason)).all()
    assert stored and all(r for r in stored) and not any("KOWALSKI" in r for r in stored)

    # the same folder again: nothing is protected twice, the outputs are written again
    code = cli.main(["protect", "--user", tech, "--out", str(tmp_path / "again"), str(inputs)], configure=False)
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert {r["status"] for r in again["files"] if not r["error"]} == {"already-protected"}


def test_dry_run_stores_nothing(sqlite_rt, tech, inputs, tmp_path):
    from core import cli

    blobs = sqlite_rt.settings.blob_dir
    before = sorted(p.name for p in blobs.rglob("*") if p.is_file())
    out = tmp_path / "preview"
    code = cli.main(["protect", "--user", tech, "--dry-run", "--out", str(out), str(inputs / "cr.dcm"),
                     str(inputs / "notes.txt")], configure=False)
    assert code == 1
    report = json.loads((out / "report.json").read_text())
    row = next(r for r in report["files"] if r["name"] == "cr.dcm")
    assert row["status"] == "previewed" and row["regions"] and row["visible"] >= 1
    preview = np.asarray(Image.open(out / row["output"]).convert("L"))
    ink = pydicom.dcmread(inputs / "cr.dcm").pixel_array > 128
    assert preview[:70, :250][ink[:70, :250]].max() == 0
    with sqlite_rt.session() as s:
        assert s.exec(select(func.count()).select_from(ImageRow)).one() == 0
    assert sorted(p.name for p in blobs.rglob("*") if p.is_file()) == before


def test_only_technicians_protect(sqlite_rt, inputs, tmp_path, monkeypatch, capsys):
    from core import cli
    from core.services import users

    users.create_user(admin_actor(sqlite_rt), "doc", "D", "doctor", PASSWORD, must_change_password=False)
    monkeypatch.setenv("MEDSHIELD_PASSWORD", PASSWORD)
    code = cli.main(["protect", "--user", "doc", "--out", str(tmp_path / "o"), str(inputs / "cr.dcm")], configure=False)
    assert code == 1 and "does not allow" in capsys.readouterr().err


def test_the_ocr_adversary_reads_nothing_of_the_patient_after_protection(sqlite_rt, tech, inputs, tmp_path):
    from core import cli
    from scripts import ocr_adversary

    if not ocr_adversary.available():
        if os.environ.get("CI"):
            pytest.fail("tesseract-ocr must be installed in CI (scripts/install.sh installs it)")
        pytest.skip("tesseract is not installed")
    out = tmp_path / "out"
    cli.main(["protect", "--user", tech, "--out", str(out), str(inputs / "cr.dcm")], configure=False)
    phi = ocr_adversary.tokens(f"{NAME_LINE} PX4471902 2019 06 14")
    before = ocr_adversary.readable(phi, ocr_adversary.read_tokens(pydicom.dcmread(inputs / "cr.dcm").pixel_array))
    assert len(before) >= 3, before  # the adversary can read the patient off the original
    after = ocr_adversary.readable(phi, ocr_adversary.read_tokens(pydicom.dcmread(out / "cr.dcm").pixel_array))
    assert after == set(), after
