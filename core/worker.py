"""Queue worker: `python -m core.worker [--workers 2]`. Recovers unfinished jobs, then consumes."""

from __future__ import annotations

import argparse
import logging
import threading

from core import jobs, taskqueue, workers
from core.services import pacs, training  # noqa: F401  (registers the pull and training tasks)
from core.runtime import get_runtime


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m core.worker")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
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
