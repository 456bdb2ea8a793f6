"""The admin's operations: health of every part, workers' heartbeats (real Huey signals), every job
with cancel and retry in core (audited; a retried batch seals nothing twice), activity per day, and
the System page doing the same through AppTest."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from core import jobs, taskqueue, workers
from core.db.models import AuditEvent, Image, Job, Region, Worker, utcnow
from core.errors import AccessDenied, Conflict
from core.services import ingest, operations, users
from tests.conftest import ADMIN_PASSWORD, PASSWORD, admin_actor
from tests.fixtures import png_bytes
from tests.test_app import app_rt, login  # noqa: F401  (fixture)


def _queued_batch(rt, tech, n=3):
    ids = [r.image_id for r in ingest.ingest_files(tech, [(f"{i}.png", png_bytes(48, 48, seed=900 + i))
                                                          for i in range(n)]).results]
    q = taskqueue.queue(rt, immediate=False)
    q.huey.flush()
    return ids, jobs.enqueue_protect(tech, ids, detect=False)


def test_health_and_worker_heartbeats(rt, make_user):
    adm = admin_actor(rt)
    checks, rows = operations.health(adm)
    by = {c.name: c for c in checks}
    assert set(by) == {"database", "queue", "blob store", "disk", "workers"}
    assert by["database"].state == "green" and by["blob store"].state == "green"
    assert by["workers"].state == "red" and "python -m core.worker" in by["workers"].detail and rows == []

    name = workers.new_name()
    q = taskqueue.queue(rt, immediate=True)
    workers.register(rt, name, q.backend, 2)
    import threading

    stop = threading.Event()
    workers.attach(rt, q.huey, name, stop)
    try:
        tech = make_user("technician")
        ids = [r.image_id for r in ingest.ingest_files(tech, [("w.png", png_bytes(40, 40, seed=5))]).results]
        jobs.enqueue_protect(tech, ids, detect=False)  # runs now: the signals count it on the worker
    finally:
        stop.set()
        q.huey.immediate = False
    checks, rows = operations.health(adm)
    (w,) = [r for r in rows if r.name == name]
    assert w.state == "green" and w.tasks_done == 1 and w.current_task == "" and w.heartbeat_age_s < 30
    assert {c.name: c for c in checks}["workers"].state == "green"
    with rt.session() as s:  # silent for two minutes: gone
        row = s.get(Worker, name)
        row.heartbeat_at = utcnow() - timedelta(minutes=2)
        s.add(row)
    assert [r for r in operations.health(adm)[1] if r.name == name][0].state == "red"


def test_cancel_and_retry_a_batch(rt, make_user):
    tech, adm = make_user("technician"), admin_actor(rt)
    ids, info = _queued_batch(rt, tech)
    (row,) = [j for j in operations.list_all_jobs(adm) if j.id == info.id]
    assert row.status == "queued" and row.owner == tech.username and row.kind == "protect"
    assert operations.cancel(adm, info.id) == "cancelled"
    with pytest.raises(Conflict):
        operations.cancel(adm, info.id)
    q = taskqueue.queue(rt)
    q.huey.immediate = True  # the cancelled job's queued tasks do nothing now
    try:
        q.protect_one(info.id, ids[0])
        with rt.session() as s:
            assert s.get(Image, ids[0]).status == "uploaded"
        assert operations.retry(adm, info.id) == info.id  # its images run again, now
    finally:
        q.huey.immediate = False
    with rt.session() as s:
        job = s.get(Job, info.id)
        assert job.status == "finished" and sorted(job.result["done"]) == ids
        assert {i.status for i in s.exec(select(Image).where(Image.id.in_(ids))).all()} == {"protected"}
        regions = len(s.exec(select(Region)).all())
        actions = [e.action for e in s.exec(select(AuditEvent)).all()]
    assert "job.cancel" in actions and "job.retry" in actions
    with pytest.raises(Conflict):
        operations.retry(adm, info.id)  # finished: nothing to retry
    assert regions == 0  # detect=False, no boxes: and nothing was sealed twice either


def test_only_admins_manage_jobs(rt, make_user):
    tech, doc = make_user("technician"), make_user("doctor")
    _, info = _queued_batch(rt, tech)
    for who in (tech, doc):
        with pytest.raises(AccessDenied):
            operations.cancel(who, info.id)
        with pytest.raises(AccessDenied):
            operations.list_all_jobs(who)


def test_activity_counts_failed_sign_ins(rt, make_user):
    doc = make_user("doctor", "actdoc")
    for _ in range(2):
        with pytest.raises(Exception):
            users.authenticate("actdoc", "not-the-password")
    act = operations.activity(admin_actor(rt), 7)
    today = utcnow().date().isoformat()
    assert act["failed_sign_ins"][today] == 2 and act["events"][today] >= 3
    assert doc


def test_system_page_cancels_and_retries(app_rt):
    tech = users.authenticate("tech", PASSWORD).actor()
    ids, info = _queued_batch(app_rt, tech, 2)
    at = login("admin", ADMIN_PASSWORD)
    at.switch_page("pages/system.py").run()
    assert not at.exception, at.exception
    assert any("database" in m.value for m in at.markdown)
    at.selectbox(key="sys_job_pick").select(info.id).run()
    [b for b in at.button if b.label == "Cancel job"][0].click().run()
    assert not at.exception, at.exception
    with app_rt.session() as s:
        assert s.get(Job, info.id).status == "cancelled"
    taskqueue.queue(app_rt).huey.immediate = True
    try:
        [b for b in at.button if b.label == "Retry job"][0].click().run()
    finally:
        taskqueue.queue(app_rt).huey.immediate = False
    assert not at.exception, at.exception
    with app_rt.session() as s:
        assert s.get(Job, info.id).status == "finished"


def test_a_worker_whose_lease_ran_out_is_reaped_once(rt):
    old, live = workers.new_name(), workers.new_name()
    workers.register(rt, old, "sqlite", 1)
    workers.register(rt, live, "sqlite", 1)
    with rt.session() as s:
        row = s.get(Worker, old)
        row.heartbeat_at = utcnow() - timedelta(seconds=workers.LEASE_SECONDS + 5)
        s.add(row)
    assert workers.reap(rt) == [old]
    assert workers.reap(rt) == []  # reaped by exactly one reaper
    with rt.session() as s:
        assert s.get(Worker, old).stopped_at is not None and s.get(Worker, live).stopped_at is None
