"""Queue worker: `python -m core.worker [--workers 2]`. Recovers unfinished jobs, then consumes."""

from __future__ import annotations

import argparse
import logging
import os
import threading

from core import jobs, taskqueue, workers
from core.services import pacs, training  # noqa: F401  (registers the pull and training tasks)
from core.runtime import get_runtime


def set_cpu_threads(n: int) -> None:
    """Bound this process's compute threads before any model loads. Two workers on two cores that each
    take both (OpenMP threads spin while they wait) protect at half the speed of one."""
    os.environ["OMP_NUM_THREADS"] = str(n)
    import torch

    torch.set_num_threads(n)


def fewer_malloc_arenas(n: int = 2) -> None:
    """glibc gives threads their own malloc arenas (up to 8 per core), each keeping freed memory: a
    worker's model and queue threads then hold hundreds of MB they do not use. Two arenas keep the
    resident size flat (MALLOC_ARENA_MAX, set before the threads start)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, n)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        pass


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m core.worker")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cpu-threads", type=int, default=int(os.environ.get("MEDSHIELD_CPU_THREADS") or 0),
                    help="compute threads for the models (PyTorch, ONNX Runtime) of this process; 0: every core. "
                         "Several workers on one machine: cores / workers each (MEDSHIELD_CPU_THREADS)")
    args = ap.parse_args(argv)
    fewer_malloc_arenas()
    if args.cpu_threads > 0:
        set_cpu_threads(args.cpu_threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rt = get_runtime()
    q = taskqueue.queue(rt, immediate=False)
    n = jobs.recover(rt)
    name = workers.new_name()
    workers.register(rt, name, q.backend, args.workers)
    stop = threading.Event()
    log = logging.getLogger("medshield.worker")

    def requeue(dead: list[str]) -> None:  # the tasks are idempotent: re-queueing twice costs a no-op each
        log.warning("worker(s) %s stopped heartbeating: re-queued %d task(s)", ", ".join(dead), jobs.recover(rt))

    def requeue_lost() -> None:
        if (n := jobs.recover(rt)):
            log.warning("the queue was empty with unfinished jobs: re-queued %d task(s)", n)

    workers.attach(rt, q.huey, name, stop, on_dead=requeue, on_idle=requeue_lost)
    log.info("worker %s on queue %s; re-enqueued %d unfinished task(s)", name, q.backend, n)
    try:
        q.huey.create_consumer(workers=args.workers, worker_type="thread", check_worker_health=True).run()
    finally:
        stop.set()
        workers.stopped(rt, name)


if __name__ == "__main__":
    main()
