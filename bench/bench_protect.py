"""Protect/restore benchmarks, each against a baseline measured in the same run.

1. Sealing cost: `seal_regions` (crop, AAD, AES-256-GCM, record) vs raw AESGCM.encrypt of the same
   bytes, the four variants timed in turn (interleaved) so that drift in machine speed cancels.
   Goal: within 1.3x.
2. Restore of an image with 5 regions: the crypto path (unwrap + open 5 regions + paste +
   SHA-256) and the whole service (decode, DB, audit). Goal: under 10 ms.
3. Protect throughput (images/s) at 512x512 and 2048x2048 (16-bit), whole service, against
   decode + PNG encode of the same image as a baseline.

    .venv/bin/python -m bench.bench_protect
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import interleaved_medians, median_time
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from PIL import Image

os.environ.setdefault("MEDSHIELD_QUIET_BOOTSTRAP", "1")

from core.crypto.keys import MasterKey, new_data_key, unwrap_data_key, wrap_data_key  # noqa: E402
from core.crypto.sealing import Box, open_region, paste_region, seal_region, seal_regions  # noqa: E402
from core.imaging.decode import pixel_digest  # noqa: E402

BOXES = [Box(10, 10, 330, 50), Box(10, 60, 250, 100), Box(400, 10, 500, 40), Box(20, 450, 300, 490),
         Box(350, 460, 500, 500)]




def bench_sealing() -> None:
    """Two baselines on the same region bytes: AES-GCM on bytes already cut out, and the least a
    caller writes to encrypt a region of an array (cut it out, then AES-GCM)."""
    dek = new_data_key()
    aes = AESGCM(dek)
    for size in (512, 2048):
        rng = np.random.default_rng(0)
        img = rng.integers(0, 4096, (size, size), dtype=np.uint16)
        k = size // 512
        boxes = [Box(b.x0 * k, b.y0 * k, b.x1 * k, b.y1 * k) for b in BOXES]
        patches = [np.ascontiguousarray(img[b.y0:b.y1, b.x0:b.x1]).tobytes() for b in boxes]

        # The baselines keep their ciphertexts, as any sealing must (discarding each one at once lets
        # the allocator hand the same memory back every time, which a real caller never sees).
        def raw():
            return [aes.encrypt(os.urandom(12), p, None) for p in patches]

        def crop_raw():
            return [aes.encrypt(os.urandom(12), img[b.y0:b.y1, b.x0:b.x1].tobytes(), None) for b in boxes]

        def ours():  # what the protect service calls: every region of the image at once
            return seal_regions(aes, 1, img, boxes)

        def one_by_one():
            return [seal_region(aes, 1, n, img, b) for n, b in enumerate(boxes)]

        for _ in range(30):
            raw(), crop_raw(), ours(), one_by_one()
        r, c, o, s = interleaved_medians([raw, crop_raw, ours, one_by_one], 2000)
        print(f"sealing 5 regions of a {size}x{size} uint16 image ({sum(len(p) for p in patches) / 1024:.0f} KiB): "
              f"seal_regions {o * 1e6:.0f} us; vs AES-GCM on cut-out bytes {r * 1e6:.0f} us = {o / r:.2f}x; "
              f"vs cut out + AES-GCM {c * 1e6:.0f} us = {o / c:.2f}x (goal <= 1.3x); "
              f"seal_region one call per region {s * 1e6:.0f} us = {s / c:.2f}x")


def bench_restore_crypto() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 4096, (512, 512), dtype=np.uint16)
    digest = pixel_digest(img)
    master = MasterKey(os.urandom(32))
    dek = new_data_key()
    wrapped = wrap_data_key(master, 1, dek)
    sealed = [seal_region(dek, 1, n, img, b) for n, b in enumerate(BOXES)]
    masked = img.copy()
    for b in BOXES:
        masked[b.y0:b.y1, b.x0:b.x1] = 0

    def restore():
        k = unwrap_data_key(master, 1, wrapped)
        out = masked.copy()
        for r in sealed:
            paste_region(out, r, open_region(k, 1, r))
        assert pixel_digest(out) == digest

    def baseline():  # the copy and the checksum alone
        out = masked.copy()
        pixel_digest(out)

    b, t = median_time(baseline, 300), median_time(restore, 300)
    print(f"restore crypto path, 5 regions, 512x512 uint16: {t * 1e3:.2f} ms "
          f"(copy+SHA-256 baseline {b * 1e3:.2f} ms, ratio {t / b:.2f}x; goal < 10 ms)")


def bench_service(size: int, n: int) -> None:
    from core import runtime
    from core.config import Settings
    from core.services import ingest, protect, restore, users
    from core.services.protect import RegionSpec

    rng = np.random.default_rng(size)
    files = []
    for _ in range(n):
        arr = (np.linspace(0, 3000, size, dtype=np.float32)[None, :] + rng.normal(0, 50, (size, size))).clip(0, 4095).astype(np.uint16)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "PNG")
        files.append(buf.getvalue())
    scale = size / 512
    specs = [RegionSpec(Box(int(b.x0 * scale), int(b.y0 * scale), int(b.x1 * scale), int(b.y1 * scale))) for b in BOXES]

    def baseline_one(data: bytes) -> None:
        im = Image.open(io.BytesIO(data))
        arr = np.asarray(im)
        out = io.BytesIO()
        Image.fromarray(arr).save(out, "PNG", compress_level=6)

    t = time.perf_counter()
    for data in files:
        baseline_one(data)
    base = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        runtime.configure(Settings(data_dir=tmp / "data", database_url=f"sqlite:///{tmp / 'b.db'}",
                                   redis_url=None, admin_password="bench-admin-1", bcrypt_rounds=4))
        admin = users.authenticate("admin", "bench-admin-1").actor()
        tech = users.create_user(admin, "bt", "B", "technician", "bench-pass-1").actor()
        doc = users.create_user(admin, "bd", "B", "doctor", "bench-pass-1").actor()
        ids = [r.image_id for r in ingest.ingest_files(tech, [(f"{i}.png", f) for i, f in enumerate(files)]).results]
        t = time.perf_counter()
        for i in ids:
            protect.protect_image(tech, i, specs)
        prot = time.perf_counter() - t
        rest = median_time(lambda: restore.restore_image(doc, ids[0]), 10)
        runtime.reset()
    print(f"protect {size}x{size} uint16, 5 regions: {n / prot:.1f} images/s "
          f"(decode+PNG-encode baseline {n / base:.1f} images/s, ratio {prot / base:.2f}x); "
          f"full restore service {rest * 1e3:.1f} ms")


def main() -> None:
    bench_sealing()
    bench_restore_crypto()
    bench_service(512, 20)
    bench_service(2048, 5)


if __name__ == "__main__":
    main()
