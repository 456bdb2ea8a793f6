"""Every DICOM the product writes passes dciodvfy (Debian's dicom3tools) with no errors: protected files
(downloads, pushes and the protect command's outputs are these bytes), and restored originals. Real
CR, CT, MR, US multi-frame, RGB and compressed inputs from pydicom / pydicom-data, each checked first
to validate as input (the product must not add an error)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from core.geometry import Box
from core.services import ingest, protect, restore
from tests.fixtures import pydicom_file

pytestmark = pytest.mark.skipif(shutil.which("dciodvfy") is None,
                                reason="dciodvfy is not installed (apt-get install dicom3tools)")

CASES = [
    ("CT_small.dcm", "CT"),
    ("MR_small.dcm", "MR"),
    ("RG3_J2KR.dcm", "CR MONOCHROME1, JPEG 2000 lossless"),
    ("examples_ybr_color.dcm", "US multi-frame (30), JPEG baseline YBR"),
    ("SC_rgb.dcm", "RGB secondary capture"),
    ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS compressed"),
]


def dciodvfy_errors(tmp_path, data: bytes) -> list[str]:
    p = tmp_path / "check.dcm"
    p.write_bytes(data)
    out = subprocess.run(["dciodvfy", str(p)], capture_output=True, text=True, timeout=120)
    lines = (out.stdout + out.stderr).splitlines()
    return [ln for ln in lines if ln.startswith("Error")]


def _available(name: str) -> bytes:
    from pydicom.data import get_testdata_file

    if get_testdata_file(name, download=False) is None:
        pytest.skip(f"{name} needs pydicom-data (pip install pydicom-data)")
    return pydicom_file(name)


@pytest.mark.parametrize("name,what", CASES, ids=[c[0] for c in CASES])
def test_outputs_validate(sqlite_rt, make_user, tmp_path, name, what):
    data = _available(name)
    src_errors = dciodvfy_errors(tmp_path, data)
    tech, doctor = make_user("technician"), make_user("doctor")
    image_id = ingest.ingest_files(tech, [(name, data)]).results[0].image_id
    assert image_id is not None
    protect.protect_image(tech, image_id, [protect.RegionSpec(Box(2, 2, 40, 14))])
    protected = protect.protected_file(tech, image_id)
    assert protected.fmt == "dicom"
    assert dciodvfy_errors(tmp_path, protected.data) == [], f"protected {what}"
    _, restored = restore.download_restored(doctor, image_id, "dicom")
    # a restored original is the original, byte for byte in its header: it validates as the input did
    # (examples_ybr_color carries a vendor's private UT element that dciodvfy flags; nothing else does)
    assert dciodvfy_errors(tmp_path, restored) == src_errors, f"restored {what}"
    if name != "examples_ybr_color.dcm":
        assert src_errors == []


def test_inherited_error_is_not_made_worse(sqlite_rt, make_user, tmp_path):
    """An input with its own validation errors (US1: no Laterality): protection adds none."""
    data = _available("US1_J2KR.dcm")
    before = dciodvfy_errors(tmp_path, data)
    tech = make_user("technician")
    image_id = ingest.ingest_files(tech, [("us1.dcm", data)]).results[0].image_id
    protect.protect_image(tech, image_id, [])
    after = dciodvfy_errors(tmp_path, protect.protected_file(tech, image_id).data)
    assert set(after) <= set(before)


def test_anonymizer_dummy_dates_are_valid():
    """dicom-anonymizer writes 00010101 for a replaced date; the output carries a valid dummy instead."""
    from pydicom import dcmread
    import io

    from core.imaging.deid import deidentify

    ds = dcmread(io.BytesIO(pydicom_file("CT_small.dcm")))
    deidentify(ds, b"k" * 32)
    for el in ds.iterall():
        if el.VR in ("DA", "DT") and el.value:
            assert not str(el.value).startswith("0001"), el
