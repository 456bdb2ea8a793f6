from __future__ import annotations

import io
import json
import os
import stat

import numpy as np
import pydicom
import pytest

from core import share_cli
from core.crypto import share
from core.crypto.sealing import Box
from core.errors import AccessDenied, IntegrityError, InvalidImage, ValidationError
from core.imaging.decode import decode_image
from core.services import ingest, protect, restore
from core.services.protect import RegionSpec
from tests.fixtures import dicom_bytes, png_bytes


def _protected(tech, name, data):
    image_id = ingest.ingest_files(tech, [(name, data)]).results[0].image_id
    protect.protect_image(tech, image_id, [RegionSpec(Box(3, 4, 25, 18)), RegionSpec(Box(30, 5, 50, 30))])
    return image_id


def test_share_round_trip_png_and_dicom(rt, make_user):
    tech, doc = make_user("technician"), make_user("doctor")
    priv, pub = share.generate_keypair()
    for name, data in (("a.png", png_bytes(60, 70, dtype=np.uint16, seed=1)), ("b.dcm", dicom_bytes(64, 64, seed=2))):
        image_id = _protected(tech, name, data)
        fname, pkg = restore.export_share(doc, image_id, pub)
        assert fname.endswith(".msshare") and b"Doe^Jane" not in pkg and b"PAT-001" not in pkg
        opened = share_cli.open_package(pkg, share.load_private(priv))
        assert np.array_equal(opened.pixels, decode_image(data).pixels)
        if name.endswith(".dcm"):
            assert pydicom.dcmread(io.BytesIO(opened.dicom_bytes)).PatientID == "PAT-001"


def test_wrong_key_and_tampering_are_refused(rt, make_user):
    tech, doc = make_user("technician"), make_user("doctor")
    priv, pub = share.generate_keypair()
    other, _ = share.generate_keypair()
    image_id = _protected(tech, "c.png", png_bytes(60, 60, seed=3))
    _, pkg = restore.export_share(doc, image_id, pub)
    with pytest.raises(IntegrityError, match="another key"):
        share_cli.open_package(pkg, share.load_private(other))
    doc_json = json.loads(pkg)
    for path in (("body", "regions", 0, "ciphertext"), ("body", "protected"), ("body", "pixel_sha256"),
                 ("body", "regions", 1, "box"), ("key", "wrapped_dek"), ("body", "image_id")):
        changed = json.loads(pkg)
        node = changed
        for k in path[:-1]:
            node = node[k]
        v = node[path[-1]]
        if isinstance(v, str):
            raw = bytearray(v.encode())
            raw[len(raw) // 2] = ord("A") if raw[len(raw) // 2] != ord("A") else ord("B")
            node[path[-1]] = raw.decode()
        elif isinstance(v, list):
            node[path[-1]] = [v[0] + 1] + v[1:]
        else:
            node[path[-1]] = v + 1
        with pytest.raises((IntegrityError, InvalidImage)):
            share_cli.open_package(json.dumps(changed).encode(), share.load_private(priv))
    assert doc_json["format"] == "medshield-share"


def test_only_doctors_share_and_keys_are_checked(rt, make_user, admin):
    tech, doc = make_user("technician"), make_user("doctor")
    _, pub = share.generate_keypair()
    image_id = _protected(tech, "d.png", png_bytes(seed=4))
    with pytest.raises(AccessDenied):
        restore.export_share(tech, image_id, pub)
    with pytest.raises(ValidationError):
        restore.export_share(doc, image_id, "not a key")
    from core.services import audit_log

    restore.export_share(doc, image_id, pub)
    assert [e.action for e in audit_log.search_events(admin, action="image.share")] == ["image.share"]


def test_offline_cli(rt, make_user, tmp_path, capsys):
    tech, doc = make_user("technician"), make_user("doctor")
    prefix = str(tmp_path / "alice")
    assert share_cli.main(["keygen", "--out", prefix]) == 0
    assert stat.S_IMODE(os.stat(prefix + ".key").st_mode) == 0o600
    pub = open(prefix + ".pub").read().strip()
    data = dicom_bytes(48, 48, seed=5)
    image_id = _protected(tech, "e.dcm", data)
    pkg_path = tmp_path / "x.msshare"
    pkg_path.write_bytes(restore.export_share(doc, image_id, pub)[1])
    out, dcm = tmp_path / "restored.png", tmp_path / "restored.dcm"
    assert share_cli.main(["open", str(pkg_path), "--key", prefix + ".key", "--out", str(out), "--dicom", str(dcm)]) == 0
    assert np.array_equal(decode_image(out.read_bytes()).pixels, decode_image(data).pixels)
    assert pydicom.dcmread(dcm).PatientName == "Doe^Jane"
    pkg_path.write_bytes(b"{not json")
    assert share_cli.main(["open", str(pkg_path), "--key", prefix + ".key", "--out", str(out)]) == 2
    assert "not a readable" in capsys.readouterr().err
