from __future__ import annotations

import hashlib

import numpy as np
import pytest
from sqlmodel import select

from core.db.models import Image, Patient
from core.errors import AccessDenied
from core.services import ingest, patients
from tests.fixtures import dicom_bytes, jpeg_bytes, png_bytes, pydicom_file, zip_bytes

REAL_DICOM = {  # pydicom's own test files: transfer syntaxes and modalities
    "CT_small.dcm": "CT", "MR_small.dcm": "MR", "MR_small_RLE.dcm": "MR",
    "MR_small_jp2klossless.dcm": "MR", "MR_small_jpeg_ls_lossless.dcm": "MR", "JPEG2000.dcm": "NM",
    "JPGExtended.dcm": None, "SC_rgb_jpeg_dcmtk.dcm": None, "SC_rgb_rle_2frame.dcm": None,
    "MR_small_bigendian.dcm": "MR", "MR_small_implicit.dcm": "MR", "image_dfl.dcm": None,
    "examples_ybr_color.dcm": "US", "examples_palette.dcm": "US", "liver_1frame.dcm": "SEG",
    "rtdose.dcm": "RTDOSE",
}


def test_png_jpeg_and_bit_depths(rt, make_user):
    tech = make_user("technician")
    files = [("grey.png", png_bytes()), ("grey16.png", png_bytes(dtype=np.uint16, seed=1)),
             ("rgb.png", png_bytes(channels=3, seed=2)), ("photo.jpg", jpeg_bytes())]
    rep = ingest.ingest_files(tech, files, modality="CR")
    assert [r.status for r in rep.results] == ["accepted"] * 4, rep.results
    with rt.session() as s:
        rows = {i.source_name: i for i in s.exec(select(Image)).all()}
    assert rows["grey16.png"].bit_depth == 16 and rows["grey.png"].bit_depth == 8
    assert rows["rgb.png"].channels == 3 and rows["photo.jpg"].source_format == "jpeg"
    assert all(r.modality == "CR" and r.status == "uploaded" for r in rows.values())


def test_stored_content_addressed_with_checksum(rt, make_user):
    tech = make_user("technician")
    data = png_bytes(seed=7)
    rep = ingest.ingest_files(tech, [("a.png", data)])
    digest = hashlib.sha256(data).hexdigest()
    with rt.session() as s:
        img = s.get(Image, rep.results[0].image_id)
    assert img.sha256 == digest and img.blob_key == digest and img.size_bytes == len(data)
    assert rt.store.get(digest) == data
    if rt.store.url.startswith("file://"):  # on local files: the two-level fan-out layout
        assert rt.store.path_for(digest).parts[-3:] == (digest[:2], digest[2:4], digest)


def test_duplicates_are_detected(rt, make_user):
    tech = make_user("technician")
    data = png_bytes(seed=3)
    first = ingest.ingest_files(tech, [("a.png", data)])
    again = ingest.ingest_files(tech, [("renamed.png", data), ("a2.png", data)])
    assert [r.status for r in again.results] == ["duplicate", "duplicate"]
    assert again.results[0].image_id == first.results[0].image_id
    with rt.session() as s:
        assert len(s.exec(select(Image)).all()) == 1


@pytest.mark.parametrize("name", sorted(REAL_DICOM))
def test_real_dicom_transfer_syntaxes(sqlite_rt, name):
    from tests.conftest import admin_actor
    from core.services import users

    tech = users.create_user(admin_actor(sqlite_rt), "tech", "T", "technician", "long-enough-1",
                             must_change_password=False).actor()
    rep = ingest.ingest_files(tech, [(name, pydicom_file(name))])
    r = rep.results[0]
    assert r.status == "accepted", r.reason
    if REAL_DICOM[name]:
        assert r.modality == REAL_DICOM[name]
    with sqlite_rt.session() as s:
        img = s.get(Image, r.image_id)
        assert img.source_format == "dicom" and img.rows > 0 and img.cols > 0 and img.thumb_key


def test_dicom_files_under_header_patient(rt, make_user):
    tech = make_user("technician")
    rep = ingest.ingest_files(tech, [("a.dcm", dicom_bytes(patient_id="MRN-77", seed=1)),
                                     ("b.dcm", dicom_bytes(patient_id="MRN-77", seed=2, frames=3))])
    assert rep.accepted == 2
    with rt.session() as s:
        p = s.exec(select(Patient).where(Patient.patient_code == "MRN-77")).one()
        imgs = s.exec(select(Image).where(Image.patient_id == p.id)).all()
    assert p.name == "Doe Jane" and p.sex == "F" and p.age == 42
    assert sorted(i.frames for i in imgs) == [1, 3] and {i.bit_depth for i in imgs} == {12}
    assert {i.study_date for i in imgs} == {"20240115"}


def test_dicom_without_preamble(rt, make_user):
    raw = dicom_bytes(seed=9)
    body = raw[132:]  # drop the preamble and "DICM"; starts with group 0002 meta elements
    rep = ingest.ingest_files(make_user("technician"), [("nopreamble", body)])
    assert rep.results[0].status == "accepted", rep.results[0].reason


def test_explicit_patient_wins(rt, make_user):
    tech = make_user("technician")
    p = patients.create_patient(tech, "P-1", "Ann Example", 30, "F")
    rep = ingest.ingest_files(tech, [("x.dcm", dicom_bytes(patient_id="OTHER"))], patient_id=p.id)
    assert rep.accepted == 1
    assert patients.get_patient(tech, p.id).image_count == 1


def test_zip_of_mixed_files_and_per_file_results(rt, make_user):
    tech = make_user("technician")
    z = zip_bytes({"a.png": png_bytes(seed=1), "b.jpg": jpeg_bytes(seed=2),
                   "c.dcm": dicom_bytes(seed=3), "notes.txt": b"readme", "broken.png": b"\x89PNG\r\n\x1a\nxx"})
    seen = []
    rep = ingest.ingest_files(tech, [("batch.zip", z)], progress=lambda d, t, n: seen.append((d, t)))
    by = {r.name: r for r in rep.results}
    assert by["batch.zip/a.png"].status == by["batch.zip/b.jpg"].status == by["batch.zip/c.dcm"].status == "accepted"
    assert by["batch.zip/broken.png"].status == "rejected" and "PNG" in by["batch.zip/broken.png"].reason
    assert "batch.zip/notes.txt" not in by
    assert seen[-1] == (4, 4) and [d for d, _ in seen] == [1, 2, 3, 4]
    assert rep.batch_id is not None


def test_class_folder_dataset_with_labels_csv(rt, make_user):
    tech = make_user("technician")
    entries = {
        "train/NORMAL/n1.png": png_bytes(seed=1), "train/PNEUMONIA/p1.png": png_bytes(seed=2),
        "val/NORMAL/n2.png": png_bytes(seed=3), "test/PNEUMONIA/p2.png": png_bytes(seed=4),
    }
    rep = ingest.ingest_files(tech, [("ds.zip", zip_bytes(entries))])
    got = {r.name.split("/", 1)[1]: (r.label, r.split) for r in rep.results}
    assert got == {"train/NORMAL/n1.png": ("NORMAL", "train"), "train/PNEUMONIA/p1.png": ("PNEUMONIA", "train"),
                   "val/NORMAL/n2.png": ("NORMAL", "val"), "test/PNEUMONIA/p2.png": ("PNEUMONIA", "test")}
    flat = {"benign/a.png": png_bytes(seed=11), "malignant/b.png": png_bytes(seed=12),
            "labels.csv": b"filename,label,split,patient_id\nbenign/a.png,benign,test,PX-1\nb.png,malignant_2,train,\n"}
    rep = ingest.ingest_files(tech, [("flat.zip", zip_bytes(flat))])
    got = {r.name.split("/", 1)[1]: (r.label, r.split) for r in rep.results}
    assert got == {"benign/a.png": ("benign", "test"), "malignant/b.png": ("malignant_2", "train")}
    with rt.session() as s:
        px = s.exec(select(Patient).where(Patient.patient_code == "PX-1")).one()
        assert s.exec(select(Image).where(Image.patient_id == px.id)).one().label == "benign"


def test_doctor_and_admin_cannot_upload(rt, make_user):
    for role in ("doctor", "admin"):
        with pytest.raises(AccessDenied):
            ingest.ingest_files(make_user(role), [("a.png", png_bytes())])


def test_cli_ingest(sqlite_rt, tmp_path, monkeypatch, capsys):
    from core import cli
    from core.services import users
    from tests.conftest import admin_actor

    users.create_user(admin_actor(sqlite_rt), "clitech", "T", "technician", "long-enough-1",
                      must_change_password=False)
    f1, f2 = tmp_path / "one.png", tmp_path / "two.txt"
    f1.write_bytes(png_bytes(seed=5))
    f2.write_text("not an image")
    monkeypatch.setenv("MEDSHIELD_PASSWORD", "long-enough-1")
    code = cli.main(["ingest", "--user", "clitech", "--modality", "DX", str(f1), str(f2)], configure=False)
    out = capsys.readouterr().out
    assert code == 1  # one file was rejected
    assert "accepted" in out and "rejected" in out and "text file" in out
    with sqlite_rt.session() as s:
        assert s.exec(select(Image)).one().modality == "DX"


def test_groups_keep_order_duplicates_rejections_and_one_audit_event_each(rt, make_user, monkeypatch):
    """Files are ingested in groups (one duplicate query, parallel blob writes, one transaction):
    results stay in upload order across group boundaries, the same bytes twice in one upload are
    stored once, a bad file is rejected alone, and every accepted file has its own audit event."""
    from core import audit
    from core.db.models import AuditEvent

    monkeypatch.setattr(ingest, "GROUP_FILES", 4)
    tech = make_user("technician")
    seen: list[int] = []
    files = [(f"f{i}.png", png_bytes(seed=100 + i)) for i in range(10)]
    files.insert(3, ("again.png", files[1][1]))  # same group as its first copy
    files.insert(9, ("later.png", files[0][1]))  # a later group
    files.insert(6, ("bad.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40))
    rep = ingest.ingest_files(tech, files, progress=lambda n, total, name: seen.append(n))
    assert [r.name for r in rep.results] == [n for n, _ in files]
    status = {r.name: r for r in rep.results}
    assert status["again.png"].status == "duplicate" and status["again.png"].image_id == status["f1.png"].image_id
    assert status["later.png"].status == "duplicate" and status["later.png"].image_id == status["f0.png"].image_id
    assert status["bad.png"].status == "rejected"
    assert rep.accepted == 10 and seen == list(range(1, len(files) + 1))
    with rt.session() as s:
        imgs = s.exec(select(Image)).all()
        uploads = s.exec(select(AuditEvent).where(AuditEvent.action == "image.upload",
                                                  AuditEvent.outcome == "success")).all()
    assert len(imgs) == 10 and {i.batch_id for i in imgs} == {rep.batch_id}
    assert sorted(int(e.object_id) for e in uploads) == sorted(i.id for i in imgs)
    for i in imgs:
        assert rt.store.get(i.blob_key) and rt.store.get(i.thumb_key)
    assert audit.verify_chain(rt.engine).ok


def test_two_uploads_of_the_same_files_at_once_store_each_once(rt, make_user):
    """Two technicians upload the same files at the same moment: every file is stored once, each
    upload reports it accepted or duplicate, nothing fails."""
    import threading

    tech, other = make_user("technician"), make_user("technician")
    files = [(f"s{i}.png", png_bytes(seed=300 + i)) for i in range(24)]
    reps, errors = {}, []
    go = threading.Barrier(2)

    def run(who):
        try:
            go.wait()
            reps[who.username] = ingest.ingest_files(who, files)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(u,)) for u in (tech, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    a, b = reps[tech.username], reps[other.username]
    for ra, rb in zip(a.results, b.results):
        assert {ra.status, rb.status} <= {"accepted", "duplicate"} and "accepted" in (ra.status, rb.status)
        assert ra.image_id == rb.image_id
    with rt.session() as s:
        assert len(s.exec(select(Image)).all()) == 24
