"""Ingest throughput against a baseline measured in the same process.

Baseline: what any uploader must do at least: decode the image with Pillow/pydicom, SHA-256 it
and write the bytes to disk. MedShield: the full `ingest_files` service (sniff, limits, decode,
checksum, duplicate check, content-addressed store, thumbnail, DB row, audit event) on SQLite.

    .venv/bin/python -m bench.bench_ingest [--n 40] [--size 512]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_pngs(n: int, size: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        base = np.linspace(0, 255, size, dtype=np.float32)[None, :] * np.ones((size, 1), np.float32)
        arr = (base + rng.normal(0, 20, (size, size))).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def baseline(files: list[bytes], root: Path) -> float:
    root.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    for data in files:
        im = Image.open(io.BytesIO(data))
        im.load()
        digest = hashlib.sha256(data).hexdigest()
        (root / digest).write_bytes(data)
    return time.perf_counter() - t


def medshield(files: list[bytes], tmp: Path) -> float:
    os.environ.setdefault("MEDSHIELD_QUIET_BOOTSTRAP", "1")
    from core import runtime
    from core.config import Settings
    from core.services import ingest, users
    from core.security import Actor

    runtime.configure(Settings(data_dir=tmp / "data", database_url=f"sqlite:///{tmp / 'b.db'}",
                                    redis_url=None, admin_password="bench-admin-1", bcrypt_rounds=4))
    admin = users.authenticate("admin", "bench-admin-1").actor()
    tech = users.create_user(admin, "benchtech", "Bench", "technician", "bench-pass-1").actor()
    assert isinstance(tech, Actor)
    t = time.perf_counter()
    for i, data in enumerate(files):
        rep = ingest.ingest_files(tech, [(f"img{i}.png", data)])
        assert rep.accepted == 1
    elapsed = time.perf_counter() - t
    runtime.reset()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    files = make_pngs(args.n, args.size)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        b = baseline(files, tmp / "baseline")
        m = medshield(files, tmp)
    print(f"images: {args.n} PNG {args.size}x{args.size}")
    print(f"baseline (decode + sha256 + write): {args.n / b:8.1f} images/s")
    print(f"medshield ingest_files (SQLite):    {args.n / m:8.1f} images/s")
    print(f"ratio medshield/baseline time: {m / b:.2f}x")


if __name__ == "__main__":
    main()
