"""Task-queue plumbing (Huey): SQLite-backed under the data directory by default, Redis when REDIS_URL is
set (many workers). Handlers are registered here by the modules that own the work (core.jobs for batch
protection and analysis, core.services.training for training and evaluation), so this layer imports
none of them: `register(name)` at import time, `queue(rt).<name>(...)` to enqueue.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Callable

from huey import RedisHuey, SqliteHuey

from core.runtime import Runtime, get_runtime

_lock = threading.Lock()
_queues: dict[str, "Queue"] = {}
HANDLERS: dict[str, tuple[Callable, int, int]] = {}  # name -> (function, retries, retry delay in s)


_running = 0  # task handlers running in this process now


def running() -> int:
    """How many task handlers this process is running. The truth a worker checks its own row against:
    Huey's completion signal is lost when the queue's store fails just as a task ends."""
    return _running


def _counted(fn: Callable) -> Callable:
    import functools

    @functools.wraps(fn)
    def run(*a, **k):
        global _running
        with _lock:
            _running += 1
        try:
            return fn(*a, **k)
        finally:
            with _lock:
                _running -= 1

    return run


class Queue:
    """A Huey instance and the tasks registered on it (attribute access by handler name)."""

    def __init__(self, rt: Runtime, immediate: bool = False):
        # one queue name per deployment (database), so several can share a Redis server
        name = "medshield-" + hashlib.sha256(rt.settings.database_url.encode()).hexdigest()[:10]
        if rt.settings.redis_url:
            self.huey = RedisHuey(name, url=rt.settings.redis_url, immediate=immediate)
            self.backend = "redis"
        else:
            self.huey = SqliteHuey(name, filename=str(rt.settings.data_dir / "queue.db"), immediate=immediate)
            self.backend = "sqlite"
        self.tasks: dict[str, Callable] = {}
        for task_name, (fn, retries, delay) in list(HANDLERS.items()):
            self._add(task_name, fn, retries, delay)

    def _add(self, name: str, fn: Callable, retries: int, delay: int) -> None:
        self.tasks[name] = self.huey.task(retries=retries, retry_delay=delay, name=name)(_counted(fn))

    def __getattr__(self, name: str) -> Callable:
        tasks = self.__dict__.get("tasks", {})
        if name in tasks:
            return tasks[name]
        raise AttributeError(f"No task {name!r} is registered (import the module that owns it).")


def register(name: str, retries: int = 0, retry_delay: int = 0) -> Callable[[Callable], Callable]:
    """Register a task handler under `name` (on every queue made so far and every later one)."""
    def decorate(fn: Callable) -> Callable:
        with _lock:
            HANDLERS[name] = (fn, retries, retry_delay)
            for q in _queues.values():
                q._add(name, fn, retries, retry_delay)
        return fn

    return decorate


def queue(rt: Runtime | None = None, immediate: bool | None = None) -> Queue:
    rt = rt or get_runtime()
    key = f"{rt.settings.redis_url or rt.settings.data_dir}"
    with _lock:
        q = _queues.get(key)
        if q is None:
            q = _queues[key] = Queue(rt)
        if immediate is not None:
            q.huey.immediate = immediate
        return q
