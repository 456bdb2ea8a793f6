"""Batch protection on the real queue: immediate mode on both databases, and real worker
processes killed mid-batch (SQLite queue and Redis queue)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlmodel import select

from core import jobs
from core import runtime as runtime_mod
from core.db.models import Image
from core.services import ingest, protect, restore, users
from tests.conftest import admin_actor, make_settings
from tests.fixtures import dicom_bytes, png_bytes

ROOT = Path(__file__).resolve().parent.parent


def test_batch_in_immediate_mode(rt, make_user):
    tech, doc = make_user("technician"), make_user("doctor")
    files = [(f"{i}.png", png_bytes(64, 64, seed=100 + i)) for i in range(3)] + [("d.dcm", dicom_bytes(seed=7))]
    ids = [r.image_id for r in ingest.ingest_files(tech, files).results]
    jobs.queue(rt, immediate=True)
    try:
        info = jobs.enqueue_protect(tech, ids, detect=False)
    finally:
        jobs.queue(rt, immediate=False)
    info = jobs.get_job(doc, info.id)
    assert info.status == "finished" and info.done == 4 and info.progress == 1.0
    with rt.session() as s:
        assert {i.status for i in s.exec(select(Image)).all()} == {"protected"}
    assert all(restore.restore_image(doc, i).verified for i in ids)
    with pytest.raises(Exception):
        jobs.enqueue_protect(doc, ids)  # doctors do not protect


def test_rerun_after_a_crash_between_commit_and_cleanup(rt, make_user):
    """A worker killed after the protect transaction committed, before the clear original was
    deleted: the recovered task deletes it and counts the image as done."""
    from core.crypto.sealing import Box
    from core.services.protect import RegionSpec

    tech, doc = make_user("technician"), make_user("doctor")
    data = png_bytes(80, 80, seed=300)
    image_id = ingest.ingest_files(tech, [("x.png", data)]).results[0].image_id
    protect.protect_image(tech, image_id, [RegionSpec(Box(0, 0, 40, 20))])
    rt.store.put(data)  # the original as the crash left it
    with rt.session() as s:
        img = s.get(Image, image_id)
        assert img.blob_key != img.sha256 and rt.store.exists(img.sha256)
    q = jobs.queue(rt, immediate=False)
    q.huey.flush()
    info = jobs.enqueue_protect(tech, [image_id], detect=False)
    jobs._protect_one(info.id, image_id)  # what the recovered task runs
    assert not rt.store.exists(img.sha256)
    assert jobs.get_job(doc, info.id).status == "finished"
    q.huey.flush()


def _need_redis(url: str) -> None:
    """Skip (fail on CI) where Redis is not reachable."""
    import redis

    try:
        redis.Redis.from_url(url).ping()
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable: {exc}")
        pytest.skip(f"Redis is not reachable: {exc}")


def _worker(env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "core.worker", "--workers", "2"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.mark.parametrize("backend", ["sqlite-queue", "redis-queue"])
def test_killed_worker_loses_nothing(tmp_path, backend):
    redis_url = None
    if backend == "redis-queue":
        redis_url = "redis://127.0.0.1:6379/0"
        _need_redis(redis_url)
    runtime_mod.reset()
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'q.db'}").with_overrides(redis_url=redis_url)
    rt = runtime_mod.configure(settings)
    adm = admin_actor(rt)
    tech = users.create_user(adm, "qt", "Q", "technician", "long-enough-1", must_change_password=False).actor()
    doc = users.create_user(adm, "qd", "Q", "doctor", "long-enough-1", must_change_password=False).actor()
    n = 16
    ids = [r.image_id for r in ingest.ingest_files(tech, [(f"{i}.png", png_bytes(700, 700, seed=200 + i))
                                                          for i in range(n)]).results]
    q = jobs.queue(rt, immediate=False)
    q.huey.flush()
    job = jobs.enqueue_protect(tech, ids, detect=False)
    env = dict(os.environ, MEDSHIELD_DATA_DIR=str(settings.data_dir), DATABASE_URL=settings.database_url,
               MEDSHIELD_ADMIN_PASSWORD="unused-admin-pass", MEDSHIELD_BCRYPT_ROUNDS="4",
               MEDSHIELD_BLOB_URL=settings.blob_url or "")  # the worker shares the test's blob store
    if redis_url:
        env["REDIS_URL"] = redis_url
    else:
        env.pop("REDIS_URL", None)
    w = _worker(env)
    try:
        deadline = time.time() + 120
        while jobs.get_job(doc, job.id).done < 3 and time.time() < deadline:
            time.sleep(0.05)
        os.killpg(w.pid, signal.SIGKILL)  # mid-batch, no goodbye
        w.wait(timeout=10)
        partial = jobs.get_job(doc, job.id)
        assert 3 <= partial.done < n, partial
        w = _worker(env)  # a restart recovers the lost tasks
        while jobs.get_job(doc, job.id).status not in ("finished", "finished_with_errors") and time.time() < deadline:
            time.sleep(0.2)
    finally:
        if w.poll() is None:
            os.killpg(w.pid, signal.SIGKILL)
            w.wait(timeout=10)
    final = jobs.get_job(doc, job.id)
    assert final.status == "finished" and final.done == n and final.failed == 0, final
    with rt.session() as s:
        imgs = s.exec(select(Image)).all()
    assert {i.status for i in imgs} == {"protected"}
    for img in imgs:
        # without regions the protected PNG can be byte-identical to the upload (same pixels)
        if img.blob_key != img.sha256:
            assert not rt.store.exists(img.sha256), "a clear original survived the crash"
        assert restore.restore_image(doc, img.id).verified
    q.huey.flush()
    runtime_mod.reset()


def test_tasks_lost_by_the_queue_are_requeued_by_an_idle_worker(tmp_path):
    """Redis restarted without persistence (or a flushed queue) loses the queued tasks of a running job:
    a live, idle worker sees an empty queue with an unfinished job and re-queues its (idempotent) tasks.
    The loss is made certain: the job's tasks go to another Redis database than the worker's. The
    worker's row also claims a task it is not running (Huey's completion signal is lost when Redis goes
    away as a task ends): an idle worker clears that, or every worker would wait on it forever."""
    import redis

    worker_redis, lost_redis = "redis://127.0.0.1:6379/14", "redis://127.0.0.1:6379/13"
    _need_redis(worker_redis)
    runtime_mod.reset()
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'q.db'}").with_overrides(redis_url=lost_redis)
    rt = runtime_mod.configure(settings)
    adm = admin_actor(rt)
    tech = users.create_user(adm, "lt", "L", "technician", "long-enough-1", must_change_password=False).actor()
    ids = [r.image_id for r in ingest.ingest_files(tech, [(f"{i}.png", png_bytes(64, 64, seed=400 + i))
                                                          for i in range(4)]).results]
    env = dict(os.environ, MEDSHIELD_DATA_DIR=str(settings.data_dir), DATABASE_URL=settings.database_url,
               MEDSHIELD_ADMIN_PASSWORD="unused-admin-pass", MEDSHIELD_BCRYPT_ROUNDS="4", REDIS_URL=worker_redis,
               MEDSHIELD_BLOB_URL=settings.blob_url or "")
    redis.Redis.from_url(worker_redis).flushdb()
    w = _worker(env)
    try:
        from core.db.models import Worker

        deadline = time.time() + 60
        while time.time() < deadline:  # the worker is up and idle; its start-up recovery found nothing
            with rt.session() as s:
                if s.exec(select(Worker)).first() is not None:
                    break
            time.sleep(0.2)
        time.sleep(1)
        with rt.session() as s:  # and its row still shows a task whose end the lost queue never signalled
            row = s.exec(select(Worker)).first()
            row.current_task = "protect_one"
            s.add(row)
        job = jobs.enqueue_protect(tech, ids, detect=False)  # tasks into a queue nobody reads: lost
        assert jobs.queue(rt).huey.pending_count() == 4
        deadline = time.time() + 90
        while jobs.get_job(tech, job.id).status != "finished" and time.time() < deadline:
            time.sleep(0.5)
    finally:
        os.killpg(w.pid, signal.SIGKILL)
        w.wait(timeout=10)
    final = jobs.get_job(tech, job.id)
    assert final.status == "finished" and final.done == 4, final
    jobs.queue(rt).huey.flush()
    redis.Redis.from_url(worker_redis).flushdb()
    runtime_mod.reset()
