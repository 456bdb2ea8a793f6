"""Time from `streamlit run` to a usable login page (the form answers in Chromium), against
the time to the health endpoint in the same run as a baseline.

    .venv/bin/python -m bench.bench_startup
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, MEDSHIELD_DATA_DIR=d, MEDSHIELD_ADMIN_PASSWORD="bench-admin-1",
                   MEDSHIELD_QUIET_BOOTSTRAP="1")
        env.pop("DATABASE_URL", None)
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(d + "/profile", executable_path="/usr/bin/chromium",
                                                       headless=True, args=ARGS)
            page = ctx.new_page()
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "Home.py"),
                                     "--server.port", str(port), "--server.address", "127.0.0.1"],
                                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                while True:
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                        break
                    except OSError:
                        time.sleep(0.05)
                t_health = time.perf_counter() - t0
                page.goto(f"http://127.0.0.1:{port}/")
                page.get_by_role("textbox", name="Username").wait_for(timeout=60_000)
                t_login = time.perf_counter() - t0
            finally:
                ctx.close()
                proc.terminate()
                proc.wait(timeout=20)
    print(f"health endpoint answers after: {t_health:.2f} s (baseline)")
    print(f"login form usable after:       {t_login:.2f} s (fresh data dir: schema + first admin)")
    print(f"ratio: {t_login / t_health:.2f}x")


if __name__ == "__main__":
    main()
