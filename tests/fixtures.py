"""Small image fixtures generated in the tests (no external data)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
from PIL import Image


def png_bytes(h: int = 48, w: int = 64, dtype=np.uint8, seed: int = 0, channels: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    hi = 65535 if dtype == np.uint16 else 255
    shape = (h, w) if channels == 1 else (h, w, channels)
    arr = rng.integers(0, hi, size=shape, dtype=np.int64).astype(dtype)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(h: int = 48, w: int = 64, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def dicom_bytes(rows: int = 32, cols: int = 32, *, patient_id: str = "PAT-001", patient_name: str = "Doe^Jane",
                modality: str = "CT", bits: int = 16, frames: int = 1, seed: int = 0,
                with_pixels: bool = True) -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName, ds.PatientSex, ds.PatientAge = patient_id, patient_name, "F", "042Y"
    ds.StudyDate, ds.Modality = "20240115", modality
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    if with_pixels:
        rng = np.random.default_rng(seed)
        dtype = np.uint16 if bits > 8 else np.uint8
        shape = (frames, rows, cols) if frames > 1 else (rows, cols)
        arr = rng.integers(0, 2 ** min(bits, 12), size=shape, dtype=np.int64).astype(dtype)
        ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16 if bits > 8 else 8
        ds.BitsStored = ds.HighBit + 1 if False else (12 if bits > 8 else 8)
        ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, 0
        if frames > 1:
            ds.NumberOfFrames = frames
        ds.PixelData = arr.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def pydicom_file(name: str) -> bytes:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    assert path, f"{name} is not in the installed pydicom wheel"
    with open(path, "rb") as fh:
        return fh.read()


def zip_bytes(entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def dicom_series(n: int, base: str = "CT_small.dcm", patient_id: str = "PACS-001",
                 patient_name: str = "Pacs^Patricia", seed: int = 0) -> list[bytes]:
    """`n` instances of one new study/series made from a real pydicom file (new UIDs, instance numbers)."""
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    src = pydicom_file(base)
    study, series = generate_uid(entropy_srcs=[f"study{seed}{base}{n}"]), generate_uid(entropy_srcs=[f"series{seed}{base}{n}"])
    out = []
    for i in range(n):
        ds = dcmread(io.BytesIO(src))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[f"{study}.{i}"])
        ds.InstanceNumber = i + 1
        ds.PatientID, ds.PatientName = patient_id, patient_name
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out
