"""Worker heartbeats (plumbing): a worker process registers itself, beats every few seconds from a
thread, and says which task and job it is running (Huey's signals), so the System page of any app
replica sees every worker alive, busy, late or gone, and a job whose worker died can be told apart."""

from __future__ import annotations

import os
import secrets
import socket
import threading
from datetime import datetime, timedelta
from typing import Callable

from huey.signals import SIGNAL_COMPLETE, SIGNAL_ERROR, SIGNAL_EXECUTING

from sqlmodel import select

from core import taskqueue
from core.db.models import Worker, utcnow
from core.runtime import Runtime

BEAT_SECONDS = 5.0
LEASE_SECONDS = 60.0  # a worker silent this long is dead: its unfinished work is queued again


def new_name() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


def register(rt: Runtime, name: str, backend: str, threads: int) -> None:
    with rt.session() as s:
        s.add(Worker(name=name, host=socket.gethostname()[:64], pid=os.getpid(), backend=backend, threads=threads,
                     started_at=utcnow(), heartbeat_at=utcnow()))


def beat(rt: Runtime, name: str, idle: bool = False) -> None:
    """The worker is alive; `idle` (it has run no task for a beat or more): a current task its row still
    shows is stale (the closing signal was lost with the queue's store) and is cleared, or it would
    look busy forever and keep the others from re-queueing lost work."""
    with rt.session() as s:
        w = s.get(Worker, name)
        if w is not None:
            w.heartbeat_at = utcnow()
            if idle and w.current_task:
                w.current_task, w.current_job_id = "", None
            s.add(w)


def _set_task(rt: Runtime, name: str, task: str, job_id: int | None, outcome: str | None = None) -> None:
    with rt.session() as s:
        w = s.get(Worker, name)
        if w is None:
            return
        w.current_task, w.current_job_id, w.heartbeat_at = task[:32], job_id, utcnow()
        if outcome == "done":
            w.tasks_done += 1
        elif outcome == "failed":
            w.tasks_failed += 1
        s.add(w)


def stopped(rt: Runtime, name: str) -> None:
    with rt.session() as s:
        w = s.get(Worker, name)
        if w is not None:
            w.stopped_at, w.current_task, w.current_job_id = utcnow(), "", None
            s.add(w)


def reap(rt: Runtime, lease: float = LEASE_SECONDS) -> list[str]:
    """Mark workers whose lease ran out (no heartbeat for `lease` seconds) as gone; returns their names.
    One UPDATE: when several live workers reap at once, each dead one is reaped by exactly one."""
    from sqlalchemy import update

    cutoff = utcnow() - timedelta(seconds=lease)
    with rt.session() as s:
        dead = [w.name for w in s.exec(select(Worker).where(Worker.stopped_at.is_(None),  # type: ignore[union-attr]
                                                             Worker.heartbeat_at < cutoff)).all()]
        reaped = []
        for name in dead:
            res = s.exec(update(Worker).where(Worker.name == name, Worker.stopped_at.is_(None))  # type: ignore[arg-type]
                         .values(stopped_at=utcnow(), current_task="lease expired"))
            if res.rowcount:
                reaped.append(name)
    return reaped


def busy_elsewhere(rt: Runtime, lease: float = LEASE_SECONDS) -> bool:
    """Whether any live worker is running a task now."""
    cutoff = utcnow() - timedelta(seconds=lease)
    with rt.session() as s:
        return s.exec(select(Worker).where(Worker.stopped_at.is_(None), Worker.heartbeat_at >= cutoff,  # type: ignore[union-attr]
                                           Worker.current_task != "")).first() is not None


def attach(rt: Runtime, huey, name: str, stop: threading.Event,
           on_dead: Callable[[list[str]], None] | None = None,
           on_idle: Callable[[], None] | None = None) -> threading.Thread:
    """Huey signals update the worker's current task; a daemon thread beats until `stop` is set, and
    every few beats reaps workers whose lease ran out, calling `on_dead` (re-queue their work)."""
    def job_of(task) -> int | None:
        args = getattr(task, "args", None) or ()
        return int(args[0]) if args and isinstance(args[0], int) else None

    @huey.signal(SIGNAL_EXECUTING)
    def _executing(signal, task, *a, **k):
        _set_task(rt, name, task.name, job_of(task))

    @huey.signal(SIGNAL_COMPLETE)
    def _complete(signal, task, *a, **k):
        _set_task(rt, name, "", None, "done")

    @huey.signal(SIGNAL_ERROR)
    def _error(signal, task, *a, **k):
        _set_task(rt, name, "", None, "failed")

    def loop() -> None:
        n = idle_beats = 0
        while not stop.wait(BEAT_SECONDS):
            n += 1
            idle_beats = idle_beats + 1 if taskqueue.running() == 0 else 0
            try:
                beat(rt, name, idle=idle_beats >= 2)
                if on_dead is not None and n % 4 == 0 and (dead := reap(rt)):
                    on_dead(dead)
                # an empty queue while a job is unfinished and no worker is busy: its tasks were lost
                # (a Redis restart without persistence, a flushed queue): the idempotent tasks go back
                if on_idle is not None and n % 6 == 3 and huey.pending_count() == 0 and not busy_elsewhere(rt):
                    on_idle()
            except Exception:  # a database hiccup must not kill the worker; the next beat retries
                pass

    t = threading.Thread(target=loop, name="medshield-heartbeat", daemon=True)
    t.start()
    return t


def state(heartbeat_at: datetime | None, stopped_at: datetime | None, now: datetime | None = None) -> str:
    """green (beat within 3 beats), amber (within a minute), red (silent longer, or stopped)."""
    from core.timeutil import as_utc

    if stopped_at is not None or heartbeat_at is None:
        return "red"
    age = ((now or utcnow()) - as_utc(heartbeat_at)).total_seconds()
    return "green" if age <= 3 * BEAT_SECONDS else ("amber" if age <= 60 else "red")
