"""Batch protection on the queue with real worker processes (`python -m core.worker`), on `file://` and
on SeaweedFS S3, with 1 and 2 workers in the same run, plus fault runs. Generated 512x512 images (PNG and
8/16-bit DICOM) with burned-in names, IDs and dates on real anatomy where ../shared/data is present,
on a synthetic gradient otherwise; every image distinct.

Per configuration it reports images/s overall and per worker, the time per image over the first 10% vs
the whole run (linearity), the peak RSS of each worker and its RSS at 20% vs at the end (flatness), and
it checks, after the job: images in the database == protected == expected, Region rows == the detections
each image recorded (sealed once, never twice), every stored object referenced and every referenced
object present and matching its SHA-256 (nothing half-written), no clear original left.

Fault runs (2 workers, file://): `kill -9` of one worker at 30% then a restart; on S3: SeaweedFS frozen
(SIGSTOP) for 10 s mid-run; with REDIS_URL: Redis restarted mid-run (the queue is in Redis).

    .venv/bin/python -m bench.bench_queue --n 10000            # the issue's size (hours on 2 cores)
    .venv/bin/python -m bench.bench_queue --n 400 --faults     # what this machine ran
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from core.config import PROJECT_ROOT


CPU_THREADS = 0  # --cpu-threads


def _pool(n: int) -> list[np.ndarray]:
    shared = PROJECT_ROOT.parent / "shared" / "data"
    try:
        from scripts.detector_data import backgrounds
        from scripts.phi_eval_data import build

        bgs = backgrounds(shared, "val", 60, 3)
        imgs = [e.image for e in build(bgs, n, "small", seed=123)]
        out = []
        for im in imgs:
            g = im if im.ndim == 2 else im.max(axis=2)
            out.append(np.asarray(PILImage.fromarray(g).resize((512, 512))))
        return out
    except Exception:  # no shared data: a gradient with text
        from PIL import ImageDraw

        out = []
        for k in range(n):
            im = PILImage.fromarray((np.linspace(20, 200, 512)[None, :] * np.ones((512, 1))).astype(np.uint8))
            d = ImageDraw.Draw(im)
            d.text((20, 20), f"DOE^JANE {k}  ID {100000 + k}", fill=255)
            d.text((20, 480), f"DOB 1970-01-{1 + k % 28:02d}", fill=255)
            out.append(np.asarray(im))
        return out


def _files(n: int) -> list[tuple[str, bytes]]:
    from bench.bench_batch import _dicom

    pool = _pool(min(n, 60))
    out = []
    for k in range(n):
        img = pool[k % len(pool)].copy()
        img[-1, :4] = [k & 255, (k >> 8) & 255, (k >> 16) & 255, 7]  # every file distinct
        if k % 2 == 0:
            buf = io.BytesIO()
            PILImage.fromarray(img).save(buf, "PNG")
            out.append((f"{k:05d}.png", buf.getvalue()))
        else:
            out.append((f"{k:05d}.dcm", _dicom(img, k)))
    return out


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children_rss(pid: int) -> int:
    return _rss_kb(pid)


def run(files, workers: int, blob_url: str | None, env_extra: dict, fault: str | None, weed=None) -> dict:
    from sqlmodel import func, select

    from core import jobs, runtime
    from core.config import Settings
    from core.db.models import Image, Region
    from core.services import ingest, users

    tmp = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    per_run = ("MEDSHIELD_BLOB_URL", "REDIS_URL", "MEDSHIELD_S3_ENDPOINT", "AWS_ACCESS_KEY_ID",
               "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if k not in per_run}  # nothing left over from the last run
    env.update(MEDSHIELD_DATA_DIR=str(tmp / "data"), MEDSHIELD_QUIET_BOOTSTRAP="1", MEDSHIELD_2FA_ROLES="",
               MEDSHIELD_BCRYPT_ROUNDS="4", MEDSHIELD_ADMIN_PASSWORD="bench-admin-1", **env_extra)
    if blob_url:
        env["MEDSHIELD_BLOB_URL"] = blob_url
    for k in per_run:
        if k in env:
            os.environ[k] = env[k]
        else:
            os.environ.pop(k, None)
    runtime.reset()
    rt = runtime.configure(Settings(data_dir=tmp / "data", database_url=f"sqlite:///{tmp / 'data' / 'medshield.db'}",
                                    redis_url=env.get("REDIS_URL"), blob_url=blob_url,
                                    admin_password="bench-admin-1", bcrypt_rounds=4))
    admin = users.authenticate("admin", "bench-admin-1").actor()
    tech = users.create_user(admin, f"bt{uuid.uuid4().hex[:6]}", "Bench", "technician", "bench-pass-1").actor()
    t = time.perf_counter()
    ids = []
    for start in range(0, len(files), 100):
        rep = ingest.ingest_files(tech, files[start:start + 100])
        ids += [r.image_id for r in rep.results if r.image_id]
    ingest_s = time.perf_counter() - t
    assert len(ids) == len(files), "every file ingested"
    jobs.queue(rt, immediate=False)
    job = jobs.enqueue_protect(tech, ids, detect=True)
    py = sys.executable

    def start_worker():
        threads = str(CPU_THREADS or max(1, (os.cpu_count() or 1) // workers))  # cores shared out, as cluster.sh
        return subprocess.Popen([py, "-m", "core.worker", "--workers", "1", "--cpu-threads", threads], env=env,
                                cwd=PROJECT_ROOT,
                                stdout=subprocess.DEVNULL, stderr=open(tmp / f"worker-{time.time():.0f}.log", "w"))

    procs = [start_worker() for _ in range(workers)]
    t0 = time.perf_counter()
    peak: dict[int, int] = {}
    rss_at_20: dict[int, int] = {}
    t_10 = None
    fault_done = False
    n = len(ids)
    while True:
        time.sleep(0.5)
        info = jobs.get_job(tech, job.id)
        frac = info.progress
        for p in procs:
            r = _children_rss(p.pid)
            peak[p.pid] = max(peak.get(p.pid, 0), r)
            if frac >= 0.2 and p.pid not in rss_at_20:
                rss_at_20[p.pid] = r
        if t_10 is None and frac >= 0.1:
            t_10 = time.perf_counter() - t0
        if fault and not fault_done and frac >= 0.3:
            fault_done = True
            if fault == "kill":
                procs[0].send_signal(signal.SIGKILL)
                procs[0].wait()
                procs[0] = start_worker()
            elif fault == "s3" and weed is not None:
                weed.send_signal(signal.SIGSTOP)
                time.sleep(10)
                weed.send_signal(signal.SIGCONT)
            elif fault == "redis":
                subprocess.run(["redis-cli", "-u", env["REDIS_URL"], "shutdown", "nosave"], capture_output=True)
                time.sleep(1)
                subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / "services.sh")], capture_output=True)
        if info.status in ("finished", "finished_with_errors", "failed", "cancelled"):
            break
        if time.perf_counter() - t0 > 6 * 3600:
            break
    total_s = time.perf_counter() - t0
    end_rss = {p.pid: _children_rss(p.pid) for p in procs}
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
    # the checks
    with rt.session() as s:
        rows = s.exec(select(Image).where(Image.id.in_(ids))).all()  # type: ignore[union-attr]
        regions = dict(s.exec(select(Region.image_id, func.count()).group_by(Region.image_id)).all())
    protected = [r for r in rows if r.status == "protected"]
    sealed_twice = sum(1 for r in protected
                       if regions.get(r.id, 0) != (r.protect_metrics or {}).get("detections", {}).get("count", 0))
    referenced = {k for r in rows for k in (r.blob_key, r.thumb_key) if k}
    stored = set(rt.store.keys())
    half = 0
    for k in referenced:
        try:
            rt.store.get(k)
        except Exception:
            half += 1
    originals_left = sum(1 for r in protected if r.sha256 in stored and r.sha256 != r.blob_key)
    out = {
        "backend": "s3" if blob_url else "file", "queue": "redis" if env.get("REDIS_URL") else "sqlite",
        "workers": workers, "cpu_threads_per_worker": CPU_THREADS or max(1, (os.cpu_count() or 1) // workers),
        "fault": fault or "none", "images": n, "job_status": info.status,
        "ingest_images_per_s": round(n / ingest_s, 2),
        "protect_images_per_s": round(n / total_s, 3), "per_worker_images_per_s": round(n / total_s / workers, 3),
        "s_per_image_first_10pct": round(t_10 / (0.1 * n), 3) if t_10 else None,
        "s_per_image_overall": round(total_s / n, 3),
        "s_per_image_after_first_10pct": round((total_s - t_10) / (0.9 * n), 3) if t_10 else None,
        "peak_rss_mb_per_worker": [round(v / 1024) for v in peak.values()],
        "rss_mb_at_20pct_vs_end": [[round(rss_at_20.get(pid, 0) / 1024), round(end_rss.get(pid, 0) / 1024)]
                                   for pid in end_rss],
        "checked": {"images_in_db": len(rows), "protected": len(protected), "expected": n,
                    "sealed_twice": sealed_twice, "objects_referenced": len(referenced), "objects_stored": len(stored),
                    "missing_or_corrupt": half, "orphans": len(stored - referenced), "clear_originals_left": originals_left},
    }
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--backends", default="file,s3")
    ap.add_argument("--faults", action="store_true")
    ap.add_argument("--cpu-threads", type=int, default=0,
                    help="compute threads per worker (default: the cores shared out among the workers)")
    args = ap.parse_args()
    global CPU_THREADS
    CPU_THREADS = args.cpu_threads
    os.environ["MEDSHIELD_2FA_ROLES"] = ""  # bench users sign in with a password only
    os.environ.setdefault("MEDSHIELD_QUIET_BOOTSTRAP", "1")
    files = _files(args.n)
    results = []
    weed = None
    s3 = {}
    if "s3" in args.backends or args.faults:
        from scripts.seaweed_local import start_seaweed

        weed, s3 = start_seaweed(Path(tempfile.mkdtemp(prefix="bench-weed-")))
    try:
        for backend in [b for b in args.backends.split(",") if b]:  # --backends "" : the fault runs only
            for w in [int(x) for x in args.workers.split(",")]:
                url = f"s3://{s3['bucket']}/b-{uuid.uuid4().hex[:8]}" if backend == "s3" else None
                results.append(run(files, w, url, s3.get("env", {}) if backend == "s3" else {}, None, weed))
        if args.faults:
            results.append(run(files, 2, None, {}, "kill"))
            results.append(run(files, 2, f"s3://{s3['bucket']}/f-{uuid.uuid4().hex[:8]}", s3["env"], "s3", weed))
            redis = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
            results.append(run(files, 2, None, {"REDIS_URL": redis}, "redis"))
    finally:
        if weed is not None:
            weed.terminate()
    by = {(r["backend"], r["workers"]): r for r in results if r["fault"] == "none"}
    for b in ("file", "s3"):
        if (b, 1) in by and (b, 2) in by:
            print(f"{b}: 2 workers / 1 worker throughput = "
                  f"{by[(b, 2)]['protect_images_per_s'] / by[(b, 1)]['protect_images_per_s']:.2f}x")


if __name__ == "__main__":
    main()
