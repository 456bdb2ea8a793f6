"""PACS pull and push against a real Orthanc (in a network namespace, scripts/orthanc_netns.py), each next
to a raw dicomweb-client baseline of the same data in the same run.

- Pull: a 200-instance CT series (real CT_small pixels, new UIDs) through the product's pull job (WADO-RS
  per instance, the full ingest path: limits, decode, checksum, store, thumbnail, DB rows, audit, per-
  instance state) vs a raw `retrieve_series` of the same series (one multipart request, no ingest) and a
  raw per-instance `retrieve_instance` loop.
- Push: the protected, de-identified series through `push_images` (checks, protected file, STOW-RS in
  batches of 20) vs raw STOW-RS of the same bytes in the same batches.

    sudo .venv/bin/python -m bench.bench_pacs [--n 200] [--rounds 3]     (root: network namespaces)

Each round pulls a fresh series right after its raw retrieve; the ratio reported is the median over
the rounds (one round on a 2-core machine swings by +-20 % or more with the server sharing the cores).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3, help="fresh series pulled, each next to its raw retrieve")
    args = ap.parse_args()
    os.environ.setdefault("MEDSHIELD_QUIET_BOOTSTRAP", "1")
    os.environ.setdefault("MEDSHIELD_2FA_ROLES", "")
    from dicomweb_client.api import DICOMwebClient
    from pydicom import dcmread

    from core import jobs, runtime
    from core.config import Settings
    from core.services import pacs, pacs_nodes, protect, users
    from scripts import orthanc_netns
    from tests.fixtures import dicom_series

    tmp = Path(tempfile.mkdtemp(prefix="bench-pacs-"))
    o = orthanc_netns.start()
    try:
        rt = runtime.configure(Settings(data_dir=tmp / "data", database_url=f"sqlite:///{tmp / 'b.db'}",
                                        redis_url=None, admin_password="bench-admin-1", bcrypt_rounds=4))
        jobs.queue(rt, immediate=True)
        admin = users.authenticate("admin", "bench-admin-1").actor()
        tech = users.create_user(admin, "benchtech", "Bench", "technician", "bench-pass-1").actor()
        node = pacs_nodes.save_node(admin, "bench", "dicomweb", url=o.dicomweb_url, auth="basic", username=o.user,
                                    secret=o.password, timeout_s=60)
        import requests

        s = requests.Session()
        s.auth = (o.user, o.password)
        raw = DICOMwebClient(o.dicomweb_url, session=s)
        raw.set_http_retry_params(retry=False)
        rounds = []
        for k in range(args.rounds):  # a fresh series each round (a pull of the same one would be a no-op)
            o.clear()
            pid = f"BENCH-PACS-{k}"
            files = dicom_series(args.n, patient_id=pid, patient_name=f"Bench^Pacs{k}", seed=99 + k)
            for f in files:
                o.upload(f)
            study = pacs.find_studies(tech, node.id, patient_id=pid)[0]
            series = pacs.find_series(tech, node.id, study.study_uid)[0]
            sops = [str(dcmread(io.BytesIO(f), stop_before_pixels=True).SOPInstanceUID) for f in files]
            t = time.perf_counter()
            got = raw.retrieve_series(study.study_uid, series.series_uid, media_types=(("application/dicom", "*"),))
            raw_series_s = time.perf_counter() - t
            assert len(got) == args.n
            del got
            raw_each_s = None
            if k == 0:
                t = time.perf_counter()
                for sop in sops:
                    raw.retrieve_instance(study.study_uid, series.series_uid, sop,
                                          media_types=(("application/dicom", "*"),))
                raw_each_s = time.perf_counter() - t
            t = time.perf_counter()
            info = pacs.pull_series(tech, node.id, study.study_uid, [series.series_uid])
            pull_s = time.perf_counter() - t
            done = pacs.get_pull(tech, info.job_id)
            assert done.status == "done" and done.counts == {"accepted": args.n}, done
            rounds.append({"raw_series_s": raw_series_s, "pull_s": pull_s, "raw_each_s": raw_each_s,
                           "ratio": pull_s / raw_series_s, "study": study.study_uid})

        from sqlmodel import select

        from core.db.models import PacsInstance

        with rt.session() as ss:  # push: the first round's series, protected
            ids = [r.image_id for r in ss.exec(select(PacsInstance).where(
                PacsInstance.study_uid == rounds[0]["study"])).all()]
        for i in ids:
            protect.protect_image(tech, i, [], use_detector=False)
        protected = [protect.protected_file(tech, i).data for i in ids]
        o.clear()
        t = time.perf_counter()
        for start in range(0, len(protected), 20):
            raw.store_instances([dcmread(io.BytesIO(d)) for d in protected[start:start + 20]])
        raw_stow_s = time.perf_counter() - t
        o.clear()
        t = time.perf_counter()
        rep = pacs.push_images(tech, node.id, ids)
        push_s = time.perf_counter() - t
        assert rep.sent == args.n, rep
        med = statistics.median(r["ratio"] for r in rounds)
        mid = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
        out = {
            "instances": args.n,
            "rounds": args.rounds,
            "pull_time_vs_raw_series_retrieve_each_round": [round(r["ratio"], 2) for r in rounds],
            "pull_time_vs_raw_series_retrieve_median": round(med, 2),
            "pull_s_each_round": [round(r["pull_s"], 3) for r in rounds],
            "raw_series_s_each_round": [round(r["raw_series_s"], 3) for r in rounds],
            "pull_instances_per_s": round(args.n / mid["pull_s"], 1),
            "raw_retrieve_series_instances_per_s": round(args.n / mid["raw_series_s"], 1),
            "raw_retrieve_instance_loop_per_s": round(args.n / rounds[0]["raw_each_s"], 1),
            "pull_time_vs_raw_instance_loop": round(rounds[0]["pull_s"] / rounds[0]["raw_each_s"], 2),
            "push_instances_per_s": round(args.n / push_s, 1),
            "raw_stow_instances_per_s": round(args.n / raw_stow_s, 1),
            "push_time_vs_raw_stow": round(push_s / raw_stow_s, 2),
        }
        print(json.dumps(out, indent=2))
    finally:
        o.stop()


if __name__ == "__main__":
    main()
