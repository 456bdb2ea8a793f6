"""Queue worker: `python -m core.worker [--workers 2]`. Recovers unfinished jobs, then consumes."""

from __future__ import annotations

import argparse
import logging

from core import jobs, taskqueue
from core.services import training  # noqa: F401  (registers the training tasks)
from core.runtime import get_runtime


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m core.worker")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rt = get_runtime()
    q = taskqueue.queue(rt, immediate=False)
    n = jobs.recover(rt)
    logging.getLogger("medshield.worker").info("queue %s; re-enqueued %d unfinished task(s)", q.backend, n)
    q.huey.create_consumer(workers=args.workers, worker_type="thread", check_worker_health=True).run()


if __name__ == "__main__":
    main()
