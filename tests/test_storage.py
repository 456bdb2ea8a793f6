"""The blob store on both backends: local files and a real S3-compatible object store (SeaweedFS,
started by the tests; no mock). Content addressing, verification on read, all-or-nothing writes,
multipart objects, migration file -> s3 verified, the orphan sweep, and protect / restore / batch
end to end with the blobs in S3."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest
from sqlmodel import select

from core import jobs
from core.db.models import Image
from core.errors import IntegrityError, NotFound, ValidationError
from core.geometry import Box
from core.hashing import sha256_hex
from core.services import ingest, protect, restore, storage_admin, users
from core.services.protect import RegionSpec
from core.storage import BlobStore, S3BlobStore, copy_all, open_store
from tests.conftest import PASSWORD, S3_BUCKET, admin_actor
from tests.fixtures import dicom_bytes, png_bytes


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return BlobStore(tmp_path / "blobs")
    request.getfixturevalue("s3_env")
    return open_store(f"s3://{S3_BUCKET}/unit-{uuid.uuid4().hex[:8]}", tmp_path)


def _tamper(store, key: str, data: bytes) -> None:
    if isinstance(store, S3BlobStore):
        store.client.put_object(Bucket=store.bucket, Key=store._k(key), Body=data)
    else:
        store.path_for(key).write_bytes(data)


def test_content_addressed_and_verified(store):
    data = os.urandom(4096)
    key, new = store.put(data)
    assert key == sha256_hex(data) and new and store.exists(key)
    assert store.put(data) == (key, False)  # a duplicate is not written twice
    assert store.get(key) == data and list(store.keys()) == [key] and store.size_bytes() == 4096
    _tamper(store, key, data[:-1] + b"X")
    with pytest.raises(IntegrityError):
        store.get(key)
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(NotFound):
        store.get(key)
    with pytest.raises(NotFound):
        store.get("../../etc/passwd")


def test_large_objects_go_in_parts(s3_env, tmp_path):
    s = open_store(f"s3://{S3_BUCKET}/big-{uuid.uuid4().hex[:8]}", tmp_path)
    data = np.random.default_rng(0).integers(0, 255, S3BlobStore.PART + 3_000_000, dtype=np.uint8).tobytes()
    key, _ = s.put(data)
    assert s.get(key) == data


def test_bad_store_urls():
    for url in ("ftp://x", "s3://", "blob"):
        with pytest.raises(ValidationError):
            open_store(url, None)


def test_migrate_file_to_s3_verified_and_resumable(sqlite_rt, s3_env, tmp_path, monkeypatch, capsys):
    from core import cli

    adm = admin_actor(sqlite_rt)
    tech = users.create_user(adm, "mig", "M", "technician", PASSWORD, must_change_password=False).actor()
    ingest.ingest_files(tech, [(f"{i}.png", png_bytes(40, 40, seed=i)) for i in range(3)])
    keys = set(sqlite_rt.store.keys())
    target = f"s3://{S3_BUCKET}/mig-{uuid.uuid4().hex[:8]}"
    dst = open_store(target, tmp_path)
    first = next(iter(keys))
    dst.put(sqlite_rt.store.get(first))  # an interrupted earlier run copied one already
    monkeypatch.setenv("MEDSHIELD_PASSWORD", "admin-pass-123")
    assert cli.main(["migrate-store", "--user", "admin", "--to", target], configure=False) == 0
    assert f"{len(keys) - 1} copied, 1 already there" in capsys.readouterr().out
    assert set(dst.keys()) == keys and all(dst.get(k) == sqlite_rt.store.get(k) for k in keys)
    _tamper(dst, first, b"damaged")
    with pytest.raises(IntegrityError):
        copy_all(sqlite_rt.store, dst)  # a damaged copy is found, not trusted


def test_sweep_removes_only_old_orphans(s3_rt):
    adm = admin_actor(s3_rt)
    tech = users.create_user(adm, "swp", "S", "technician", PASSWORD, must_change_password=False).actor()
    ingest.ingest_files(tech, [("a.png", png_bytes(40, 40, seed=9))])
    orphan, _ = s3_rt.store.put(b"left by a crash between the blob and its row")
    assert storage_admin.sweep_orphans(adm, min_age_minutes=60) == (0, 0)  # too young: maybe a write in flight
    assert storage_admin.sweep_orphans(adm, min_age_minutes=0, dry_run=True) == (1, 0)
    assert storage_admin.sweep_orphans(adm, min_age_minutes=0) == (1, 1)
    assert not s3_rt.store.exists(orphan) and len(list(s3_rt.store.keys())) == 2  # the image and its thumbnail


def test_protect_restore_and_batch_with_blobs_in_s3(s3_rt):
    adm = admin_actor(s3_rt)
    tech = users.create_user(adm, "s3t", "T", "technician", PASSWORD, must_change_password=False).actor()
    doc = users.create_user(adm, "s3d", "D", "doctor", PASSWORD, must_change_password=False).actor()
    files = [("x.png", png_bytes(96, 96, seed=21)), ("y.dcm", dicom_bytes(64, 64, seed=3)),
             ("z.png", png_bytes(80, 80, seed=22))]
    ids = [r.image_id for r in ingest.ingest_files(tech, files).results]
    with s3_rt.session() as s:
        original = s.get(Image, ids[0]).sha256
    protect.protect_image(tech, ids[0], [RegionSpec(Box(10, 10, 60, 30))])
    assert not s3_rt.store.exists(original)  # the clear original is gone from the object store
    r = restore.restore_image(doc, ids[0])
    assert r.verified
    with s3_rt.session() as s:
        prot_key = s.get(Image, ids[0]).blob_key
    _tamper(s3_rt.store, prot_key, b"changed in the bucket")
    with pytest.raises(IntegrityError):
        restore.restore_image(doc, ids[0])
    q = jobs.queue(s3_rt, immediate=True)
    try:
        info = jobs.enqueue_protect(tech, ids[1:], detect=False)
    finally:
        q.huey.immediate = False
    assert jobs.get_job(doc, info.id).status == "finished"
    assert all(restore.restore_image(doc, i).verified for i in ids[1:])
    with s3_rt.session() as s:
        assert {i.status for i in s.exec(select(Image).where(Image.id.in_(ids[1:]))).all()} == {"protected"}


def test_a_version_trained_elsewhere_is_fetched_from_the_store_by_checksum(s3_rt):
    from core.db.models import ModelVersion
    from core.services.models import local_weights

    weights = os.urandom(2048)
    sha, _ = s3_rt.store.put(weights)
    with s3_rt.session() as s:  # a version another machine trained: its file is not on this one
        s.add(ModelVersion(task="classifier-x", name="x", version="v1", path="/elsewhere/x.pt", sha256=sha))
    path = local_weights("/elsewhere/x.pt", sha)
    assert open(path, "rb").read() == weights and path.endswith(f"{sha}.pt")
    assert storage_admin.sweep_orphans(admin_actor(s3_rt), min_age_minutes=0) == (0, 0)  # weights are not orphans
