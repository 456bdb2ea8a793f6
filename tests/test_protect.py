"""Protect and restore: sealing, masking, de-identification, tampering, rotation."""

from __future__ import annotations

import io
import os
import stat

import numpy as np
import pydicom
import pytest
from sqlalchemy import text
from sqlmodel import select

from core.crypto.keys import MasterKey, new_data_key, unwrap_data_key, wrap_data_key
from core.crypto.sealing import Box, open_region, region_aad, seal_region, seal_regions
from core.db.models import Image, Region
from core.errors import AccessDenied, Conflict, IntegrityError
from core.imaging.decode import decode_image
from core.imaging.deid import DeidOptions
from core.services import ingest, keys, protect, restore
from core.services.protect import RegionSpec
from tests.fixtures import dicom_bytes, png_bytes, pydicom_file

BOXES = [RegionSpec(Box(2, 3, 20, 15)), RegionSpec(Box(10, 10, 30, 40), cls="name")]


def _ingest(tech, name, data):
    rep = ingest.ingest_files(tech, [(name, data)])
    assert rep.results[0].status == "accepted", rep.results[0].reason
    return rep.results[0].image_id


@pytest.fixture
def tech(make_user):
    return make_user("technician")


@pytest.fixture
def doctor(make_user):
    return make_user("doctor")


@pytest.mark.parametrize("name,data", [
    ("grey.png", png_bytes(100, 120, seed=1)),
    ("grey16.png", png_bytes(100, 120, dtype=np.uint16, seed=2)),
    ("rgb.png", png_bytes(50, 60, channels=3, seed=3)),
    ("ct.dcm", dicom_bytes(64, 64, seed=4)),
    ("multi.dcm", dicom_bytes(32, 32, frames=3, seed=5)),
])
def test_round_trip_is_pixel_exact(rt, tech, doctor, name, data):
    original = decode_image(data).pixels
    image_id = _ingest(tech, name, data)
    res = protect.protect_image(tech, image_id, BOXES)
    assert res.regions == 2
    with rt.session() as s:
        img = s.get(Image, image_id)
        assert img.status == "protected" and img.sha256 not in (img.blob_key,)
        assert not rt.store.exists(img.sha256), "the clear original must be deleted"
    got = protect.protected_pixels(tech, image_id)
    stored, frames = got.pixels, got.frames
    first = stored[0] if frames > 1 else stored
    orig_first = original[0] if frames > 1 else original
    assert (first[3:15, 2:20] == 0).all() and not np.array_equal(first, orig_first)
    keep = np.ones(first.shape[:2], bool)
    keep[3:15, 2:20] = keep[10:40, 10:30] = False
    assert np.array_equal(first[keep], orig_first[keep]), "pixels outside the regions stay as they were"
    restored = restore.restore_image(doctor, image_id)
    assert restored.verified and np.array_equal(restored.pixels, original)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_jp2klossless.dcm", "SC_rgb_jpeg_dcmtk.dcm",
                                  "SC_rgb_rle_2frame.dcm", "JPGExtended.dcm", "MR_small_jpeg_ls_lossless.dcm"])
def test_real_dicom_round_trip_and_original_header(sqlite_rt, name):
    from core.services import users
    from tests.conftest import admin_actor

    adm = admin_actor(sqlite_rt)
    tech = users.create_user(adm, "tt", "T", "technician", "long-enough-1").actor()
    doc = users.create_user(adm, "dd", "D", "doctor", "long-enough-1").actor()
    data = pydicom_file(name)
    orig = pydicom.dcmread(io.BytesIO(data))
    image_id = _ingest(tech, name, data)
    protect.protect_image(tech, image_id, BOXES)
    restored = restore.restore_image(doc, image_id)
    back = pydicom.dcmread(io.BytesIO(restored.dicom_bytes))
    for kw in ("PatientName", "PatientID", "StudyInstanceUID", "SOPInstanceUID", "StudyDate"):
        assert str(back.get(kw, "")) == str(orig.get(kw, "")), kw
    assert np.array_equal(back.pixel_array, decode_image(data).pixels)


def test_protected_dicom_is_deidentified(rt, tech):
    raw = pydicom.dcmread(io.BytesIO(dicom_bytes(patient_id="MRN-42", patient_name="Smith^John")))
    raw.InstitutionName, raw.AccessionNumber, raw.ReferringPhysicianName = "St Mary", "ACC-9", "Who^Dr"
    raw.add_new((0x0011, 0x0010), "LO", "VENDOR")
    raw.add_new((0x0011, 0x1001), "LO", "private secret")
    buf = io.BytesIO()
    raw.save_as(buf)
    image_id = _ingest(tech, "x.dcm", buf.getvalue())
    protect.protect_image(tech, image_id, BOXES)
    with rt.session() as s:
        img = s.get(Image, image_id)
    ds = pydicom.dcmread(io.BytesIO(rt.store.get(img.blob_key)))
    text_dump = str(ds)
    for phi in ("MRN-42", "Smith", "St Mary", "ACC-9", "Who^Dr", "private secret", "20240115"):
        assert phi not in text_dump, phi
    assert ds.PatientIdentityRemoved == "YES" and ds.BurnedInAnnotation == "NO"
    assert ds.PatientID.startswith("ANON-") and ds.StudyInstanceUID.startswith("2.25.")
    assert "113100" in [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]


def test_uid_remap_is_consistent_across_a_study(rt, tech):
    a = pydicom.dcmread(io.BytesIO(dicom_bytes(seed=1)))
    b = pydicom.dcmread(io.BytesIO(dicom_bytes(seed=2)))
    b.StudyInstanceUID = a.StudyInstanceUID
    ids = []
    for ds in (a, b):
        buf = io.BytesIO()
        ds.save_as(buf)
        ids.append(_ingest(tech, "s.dcm", buf.getvalue()))
    for i in ids:
        protect.protect_image(tech, i, [], deid=DeidOptions(retain_dates_shifted=True))
    out = []
    with rt.session() as s:
        for i in ids:
            out.append(pydicom.dcmread(io.BytesIO(rt.store.get(s.get(Image, i).blob_key))))
    assert out[0].StudyInstanceUID == out[1].StudyInstanceUID != a.StudyInstanceUID
    assert out[0].SOPInstanceUID != out[1].SOPInstanceUID
    assert out[0].StudyDate == out[1].StudyDate != "20240115" and len(out[0].StudyDate) == 8
    assert "BurnedInAnnotation" not in out[0] or out[0].BurnedInAnnotation != "NO"  # nothing was cleaned


def test_image_without_text_passes_through_deidentified(rt, tech, doctor):
    data = dicom_bytes(seed=8, patient_name="Plain^Image")
    image_id = _ingest(tech, "plain.dcm", data)
    res = protect.protect_image(tech, image_id, [])
    assert res.regions == 0 and res.deid_method
    with rt.session() as s:
        ds = pydicom.dcmread(io.BytesIO(rt.store.get(s.get(Image, image_id).blob_key)))
    assert "Plain" not in str(ds.PatientName)
    assert np.array_equal(restore.restore_image(doctor, image_id).pixels, decode_image(data).pixels)


def test_roles(rt, tech, doctor, make_user):
    image_id = _ingest(tech, "a.png", png_bytes(seed=11))
    with pytest.raises(AccessDenied):
        protect.protect_image(doctor, image_id, BOXES)
    protect.protect_image(tech, image_id, BOXES)
    with pytest.raises(AccessDenied):
        restore.restore_image(tech, image_id)  # technicians never see restored originals
    admin = make_user("admin")
    for fn in (restore.restore_image, protect.protected_pixels):
        with pytest.raises(AccessDenied):
            fn(admin, image_id)
    with pytest.raises(Conflict):
        protect.protect_image(tech, image_id, BOXES)


def test_every_byte_of_a_sealed_region_is_authenticated():
    dek = new_data_key()
    pixels = np.arange(40 * 50, dtype=np.uint16).reshape(40, 50)
    sealed = seal_region(dek, 7, 0, pixels, Box(5, 6, 17, 14))
    assert np.array_equal(open_region(dek, 7, sealed), pixels[6:14, 5:17])

    for i in range(len(sealed.ciphertext)):  # ciphertext and the 16-byte tag
        ct = bytearray(sealed.ciphertext)
        ct[i] ^= 0x01
        with pytest.raises(IntegrityError, match="Region 0"):
            open_region(dek, 7, sealed._replace(ciphertext=bytes(ct)))
    for i in range(len(sealed.nonce)):
        nonce = bytearray(sealed.nonce)
        nonce[i] ^= 0x80
        with pytest.raises(IntegrityError):
            open_region(dek, 7, sealed._replace(nonce=bytes(nonce)))
    aad_changes = [sealed._replace(index=1), sealed._replace(box=Box(6, 6, 18, 14)),
                   sealed._replace(box=Box(5, 6, 17, 14, frame=1)), sealed._replace(dtype="<i2"),
                   sealed._replace(dtype=">u2"), sealed._replace(shape=(12, 8))]
    for changed in aad_changes:
        with pytest.raises(IntegrityError):
            open_region(dek, 7, changed)
    with pytest.raises(IntegrityError):
        open_region(dek, 8, sealed)  # moved to another image
    with pytest.raises(IntegrityError):
        open_region(new_data_key(), 7, sealed)  # wrong key


def test_region_aad_layout_is_stable_and_batch_sealing_matches():
    """Regions sealed by earlier versions must still open: the AAD's bytes are fixed."""
    assert region_aad(7, 2, Box(5, 6, 17, 14, frame=1), "<u2", (8, 12)) == \
        b"medshield/region/v1|image=7|region=2|frame=1|box=5,6,17,14|dtype=<u2|shape=8x12"
    assert region_aad(7, 0, Box(0, 0, 4, 3), "|u1", (3, 4, 3)).endswith(b"|dtype=|u1|shape=3x4x3")
    pixels = np.arange(2 * 20 * 30, dtype=np.uint16).reshape(2, 20, 30)
    dek = new_data_key()
    boxes = [Box(1, 2, 9, 7), Box(3, 3, 20, 19, frame=1)]
    batch = seal_regions(dek, 9, pixels, boxes, frames=2)
    assert [r.index for r in batch] == [0, 1] and len({r.nonce for r in batch}) == 2
    for r, b in zip(batch, boxes):
        assert np.array_equal(open_region(dek, 9, r), pixels[b.frame, b.y0:b.y1, b.x0:b.x1])
    assert np.array_equal(open_region(dek, 9, seal_region(dek, 9, 1, pixels, boxes[1], 2)), pixels[1, 3:19, 3:20])
    rgb = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)  # a colour image: 3-axis regions
    sealed = seal_regions(dek, 9, rgb, boxes[:1] * 3, start=4)
    assert [r.index for r in sealed] == [4, 5, 6] and len({r.nonce for r in sealed}) == 3
    assert all(np.array_equal(open_region(dek, 9, r), rgb[2:7, 1:9]) for r in sealed)


def test_every_byte_of_a_wrapped_key_is_authenticated():
    master = MasterKey(os.urandom(32))
    dek = new_data_key()
    wrapped = wrap_data_key(master, 5, dek)
    assert unwrap_data_key(master, 5, wrapped) == dek
    for i in range(len(wrapped)):
        w = bytearray(wrapped)
        w[i] ^= 0x04
        with pytest.raises(IntegrityError):
            unwrap_data_key(master, 5, bytes(w))
    with pytest.raises(IntegrityError):
        unwrap_data_key(master, 6, wrapped)
    with pytest.raises(IntegrityError):
        unwrap_data_key(MasterKey(os.urandom(32)), 5, wrapped)
    assert len({wrap_data_key(master, 5, dek)[:12] for _ in range(200)}) == 200  # fresh nonces


def test_tampered_database_rows_are_refused_by_restore(rt, tech, doctor):
    image_id = _ingest(tech, "t.png", png_bytes(80, 80, seed=12))
    protect.protect_image(tech, image_id, BOXES)
    def restore_fails(match):
        with pytest.raises(IntegrityError, match=match):
            restore.restore_image(doctor, image_id)

    with rt.session() as s:
        region = s.exec(select(Region).where(Region.image_id == image_id, Region.index == 1)).one()
        good_ct, good_nonce = bytes(region.ciphertext), bytes(region.nonce)
        img = s.get(Image, image_id)
        good_wrapped = bytes(img.dek_wrapped)
    for i in (0, len(good_ct) // 2, len(good_ct) - 1):  # pixels and tag, through the database
        ct = bytearray(good_ct)
        ct[i] ^= 0xFF
        with rt.session() as s:
            r = s.exec(select(Region).where(Region.image_id == image_id, Region.index == 1)).one()
            r.ciphertext = bytes(ct)
            s.add(r)
        restore_fails("Region 1")
    with rt.engine.begin() as c:
        c.execute(text("UPDATE regions SET ciphertext=:ct, x0=x0+1 WHERE image_id=:i AND \"index\"=1"),
                  {"ct": good_ct, "i": image_id})
    restore_fails("Region 1")  # moving the box breaks the AAD
    with rt.engine.begin() as c:
        c.execute(text("UPDATE regions SET x0=x0-1 WHERE image_id=:i AND \"index\"=1"), {"i": image_id})
        c.execute(text("UPDATE images SET dek_wrapped=:w WHERE id=:i"),
                  {"w": good_wrapped[:-1] + bytes([good_wrapped[-1] ^ 1]), "i": image_id})
    restore_fails("data key")
    with rt.engine.begin() as c:
        c.execute(text("UPDATE images SET dek_wrapped=:w WHERE id=:i"), {"w": good_wrapped, "i": image_id})
    assert restore.restore_image(doctor, image_id).verified  # all repaired: works again
    assert good_nonce


def test_changed_protected_pixels_fail_the_checksum(rt, tech, doctor):
    image_id = _ingest(tech, "c.png", png_bytes(60, 60, seed=13))
    protect.protect_image(tech, image_id, BOXES)
    with rt.session() as s:
        img = s.get(Image, image_id)
        pixels = decode_image(rt.store.get(img.blob_key)).pixels.copy()
        pixels[50, 50] ^= 1  # outside any region
        from core.imaging.display import encode_png

        key, _ = rt.store.put(encode_png(pixels))
        img.blob_key = key
        s.add(img)
    with pytest.raises(IntegrityError, match="SHA-256"):
        restore.restore_image(doctor, image_id)


def test_master_key_rotation_rewraps_without_touching_ciphertexts(rt, tech, doctor, admin):
    ids = [_ingest(tech, f"r{i}.png", png_bytes(40, 40, seed=20 + i)) for i in range(3)]
    for i in ids:
        protect.protect_image(tech, i, BOXES)
    key_file = rt.settings.secrets_dir / "master.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    old_id = rt.keyring.current.id
    with rt.session() as s:
        before = {(r.image_id, r.index): bytes(r.ciphertext) for r in s.exec(select(Region)).all()}
    seen = []
    rep = keys.rotate_master_key(admin, progress=lambda d, t: seen.append((d, t)))
    assert rep.rewrapped == 3 and rep.new_key_id != old_id and seen[-1] == (3, 3)
    assert not (rt.settings.secrets_dir / "master.key.previous").exists()
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    with rt.session() as s:
        after = {(r.image_id, r.index): bytes(r.ciphertext) for r in s.exec(select(Region)).all()}
        assert {img.dek_key_id for img in s.exec(select(Image)).all()} == {rep.new_key_id}
    assert before == after
    for i in ids:
        assert restore.restore_image(doctor, i).verified
    with pytest.raises(AccessDenied):
        keys.rotate_master_key(doctor)
    assert keys.key_status(admin)["images_on_older_key"] == 0


def test_restore_and_download_are_audited(rt, tech, doctor, admin):
    from core.services import audit_log

    image_id = _ingest(tech, "dl.dcm", dicom_bytes(seed=30))
    protect.protect_image(tech, image_id, BOXES)
    name, data = restore.download_restored(doctor, image_id, "dicom")
    assert name.endswith(".dcm") and pydicom.dcmread(io.BytesIO(data)).PatientName == "Doe^Jane"
    assert restore.download_restored(doctor, image_id, "png")[1].startswith(b"\x89PNG")
    actions = [e.action for e in audit_log.search_events(admin, username=doctor.username)]
    assert actions.count("image.restore") == 2 and actions.count("image.download") == 2
    assert all("Doe" not in e.detail for e in audit_log.search_events(admin))


def test_signed_ct_downloads(sqlite_rt):
    """CT_small holds signed 16-bit values: PNG is an 8-bit view, JPEG works, DICOM is exact."""
    from core.services import users
    from tests.conftest import admin_actor

    adm = admin_actor(sqlite_rt)
    tech = users.create_user(adm, "tt", "T", "technician", "long-enough-1").actor()
    doc = users.create_user(adm, "dd", "D", "doctor", "long-enough-1").actor()
    data = pydicom_file("CT_small.dcm")
    image_id = _ingest(tech, "ct.dcm", data)
    protect.protect_image(tech, image_id, BOXES)
    restored = restore.restore_image(doc, image_id)
    assert restored.pixels.dtype == np.int16 and not restored.png_is_lossless
    assert restored.png_bytes().startswith(b"\x89PNG") and restored.jpeg_bytes().startswith(b"\xff\xd8")
    assert np.array_equal(pydicom.dcmread(io.BytesIO(restored.dicom_bytes)).pixel_array, decode_image(data).pixels)
