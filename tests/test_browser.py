"""One real-browser test: Debian's Chromium, driven by Playwright, against `streamlit run`."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from core import runtime as runtime_mod
from core.services import users
from tests.conftest import ADMIN_PASSWORD, ARTIFACTS, PASSWORD, admin_actor, make_settings
from tests.fixtures import png_bytes

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("MEDSHIELD_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    if not Path(CHROMIUM).exists():
        msg = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    data = tmp_path / "data"
    runtime_mod.reset()
    rt = runtime_mod.configure(make_settings(tmp_path, f"sqlite:///{data / 'medshield.db'}"))
    users.create_user(admin_actor(rt), "tina", "Tina Technician", "technician", PASSWORD,
                      must_change_password=False)
    runtime_mod.reset()
    port = _free_port()
    env = dict(os.environ, MEDSHIELD_DATA_DIR=str(data), MEDSHIELD_ADMIN_PASSWORD="unused-admin-pass",
               DATABASE_URL=f"sqlite:///{data / 'medshield.db'}")
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "Home.py"),
                             "--server.port", str(port), "--server.address", "127.0.0.1"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    while time.monotonic() - started < 60:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.25)
    else:
        proc.kill()
        pytest.fail("the app did not answer its health check within 60 s")
    yield url, data
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def browser(p, profile, height: int = 1100):
    """Debian's Chromium, headless, with a fresh profile (no background networking)."""
    return p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True, args=ARGS,
                                                viewport={"width": 1400, "height": height})


def settle(page) -> None:
    """Wait until Streamlit has finished its reruns (the cookie component answers once at load)."""
    for _ in range(3):
        page.wait_for_timeout(600)
        page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=30_000)


def sign_in(page, username: str, password: str) -> None:
    """Fill the form once the page is quiet; the cookie component's first answer reruns the
    script once at load, so wait for its frame before typing."""
    page.get_by_role("textbox", name="Username").wait_for(timeout=30_000)
    page.locator("iframe").first.wait_for(state="attached", timeout=30_000)
    settle(page)
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_login_upload_reload_logout_in_chromium(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, data = server
    ARTIFACTS.mkdir(exist_ok=True)
    img = tmp_path / "chest.png"
    img.write_bytes(png_bytes(256, 256, seed=42))
    with sync_playwright() as p:
        ctx = browser(p, tmp_path / "profile")
        try:
            page = ctx.new_page()
            page.goto(url)
            sign_in(page, "tina", PASSWORD)
            expect(page.get_by_role("heading", name="Upload", exact=True)).to_be_visible(timeout=30_000)
            nav = page.locator('[data-testid="stSidebarNav"]')
            expect(nav).to_contain_text("Patients")
            expect(nav).not_to_contain_text("Admin")

            page.locator('input[type="file"]').set_input_files(str(img))
            expect(page.get_by_text("chest.png").first).to_be_visible(timeout=20_000)
            page.get_by_role("button", name="Upload", exact=True).click()
            expect(page.get_by_text("1 accepted, 0 duplicate(s), 0 rejected.")).to_be_visible(timeout=30_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "browser-upload.png"))

            # draw a box with the mouse on the Protect page's canvas and seal it
            page.get_by_role("link", name="Protect").click()
            expect(page.get_by_role("heading", name="Protect", exact=True)).to_be_visible(timeout=30_000)
            canvas = page.locator("canvas.upper-canvas").first
            canvas.wait_for(timeout=30_000)
            settle(page)
            bb = canvas.bounding_box()
            page.mouse.move(bb["x"] + 20, bb["y"] + 30)
            page.mouse.down()
            page.mouse.move(bb["x"] + 80, bb["y"] + 60, steps=8)
            page.mouse.move(bb["x"] + 120, bb["y"] + 90, steps=8)
            page.mouse.up()
            expect(page.get_by_role("button", name="Seal 1 region(s) and protect")).to_be_visible(timeout=30_000)
            settle(page)
            canvas_width = bb["width"]
            # a narrower display keeps the box, drawn where it was on the image (Fabric.js 7 places
            # objects by their centre unless told otherwise: the box must come back by its corner)
            page.get_by_role("slider").first.focus()
            page.keyboard.press("ArrowLeft")
            settle(page)
            canvas = page.locator("canvas.upper-canvas").first
            expect(page.get_by_role("button", name="Seal 1 region(s) and protect")).to_be_visible(timeout=30_000)
            nb = canvas.bounding_box()
            assert nb["width"] < canvas_width - 20
            shot = np.asarray(PILImage.open(io.BytesIO(canvas.screenshot())).convert("RGB")).astype(int)
            k = nb["width"] / canvas_width
            y, x0, x1 = round(30 * k), round(20 * k) + 4, round(120 * k) - 4
            band = shot[y - 2:y + 3, x0:x1]
            stroke = (band[..., 0] > 170) & (band[..., 1] < 150) & (band[..., 2] < 120)
            assert stroke.any(axis=0).mean() > 0.8, "the box is not drawn where it was on the image"
            page.screenshot(path=str(ARTIFACTS / "browser-protect.png"))
            page.get_by_role("button", name="Seal 1 region(s) and protect").click()
            expect(page.get_by_text("protected: 1 region(s) sealed")).to_be_visible(timeout=30_000)

            # annotate: draw a rectangle, label the image, save
            page.get_by_role("link", name="Annotate").click()
            expect(page.get_by_role("heading", name="Annotate", exact=True)).to_be_visible(timeout=30_000)
            canvas = page.locator("canvas.upper-canvas").first
            canvas.wait_for(timeout=30_000)
            settle(page)
            ab = canvas.bounding_box()
            page.mouse.move(ab["x"] + 200, ab["y"] + 200)
            page.mouse.down()
            page.mouse.move(ab["x"] + 300, ab["y"] + 260, steps=10)
            page.mouse.up()
            expect(page.get_by_text("1 shape(s)", exact=False)).to_be_visible(timeout=30_000)
            settle(page)
            page.get_by_role("textbox", name="Image label").fill("NORMAL")
            page.get_by_role("button", name="Save annotations").click()
            expect(page.get_by_text("Saved 1 shape(s)", exact=False)).to_be_visible(timeout=30_000)
            settle(page)
            page.screenshot(path=str(ARTIFACTS / "browser-annotate.png"))
            annotate_width = ab["width"]

            # a reload of a deep link keeps the page (the login cookie is set by now)
            page.goto(url + "/patients")
            expect(page.get_by_role("heading", name="Patients", exact=True)).to_be_visible(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "browser-patients.png"))

            page.get_by_role("button", name="Log out").click()
            expect(page.get_by_role("textbox", name="Username")).to_be_visible(timeout=30_000)
            settle(page)
            # the re-login cookie is gone: a reload of a deep link asks for the password again
            page.goto(url + "/patients")
            expect(page.get_by_role("textbox", name="Username")).to_be_visible(timeout=30_000)
            settle(page)
            expect(page.get_by_role("heading", name="Patients", exact=True)).to_have_count(0)
            page.screenshot(path=str(ARTIFACTS / "browser-after-logout.png"))
        finally:
            ctx.close()

    runtime_mod.reset()
    rt = runtime_mod.configure(make_settings(tmp_path, f"sqlite:///{data / 'medshield.db'}"))
    from sqlmodel import select

    from core.db.models import Annotation, AuditEvent, Image, Region

    with rt.session() as s:
        images = s.exec(select(Image)).all()
        regions = s.exec(select(Region)).all()
        shapes = s.exec(select(Annotation).where(Annotation.kind == "rect")).all()
        actions = [e.action for e in s.exec(select(AuditEvent).order_by(AuditEvent.seq)).all()]
    runtime_mod.reset()
    assert [i.source_name for i in images] == ["chest.png"] and images[0].rows == 256
    assert images[0].status == "protected" and len(regions) == 1
    scale = 256 / canvas_width  # the canvas shows the 256 px image at its own width
    r = regions[0]
    assert abs(r.x0 - 20 * scale) <= 3 and abs(r.y0 - 30 * scale) <= 3
    assert abs(r.x1 - 120 * scale) <= 3 and abs(r.y1 - 90 * scale) <= 3
    assert r.ciphertext and len(r.nonce) == 12
    assert len(shapes) == 1 and shapes[0].label == "lesion"
    k = 256 / annotate_width
    x0, y0, x1, y1 = shapes[0].geometry["box"]
    assert abs(x0 - 200 * k) <= 3 and abs(y0 - 200 * k) <= 3 and abs(x1 - 300 * k) <= 3 and abs(y1 - 260 * k) <= 3
    assert images[0].label == "NORMAL"
    assert "auth.login" in actions and "image.upload" in actions and actions[-1] == "auth.logout"


def test_two_factor_sign_in_in_chromium(server, tmp_path):
    """A doctor with an enrolled authenticator signs in with the password and a code computed from the
    enrolled secret; timed next to a password-only sign-in in the same run (test-artifacts/signin-times.json)."""
    import json

    import pyotp
    from playwright.sync_api import expect, sync_playwright

    from core.services import twofactor

    url, data = server
    runtime_mod.reset()
    rt = runtime_mod.configure(make_settings(tmp_path, f"sqlite:///{data / 'medshield.db'}"))
    doc = users.create_user(admin_actor(rt), "dana", "Dana Doctor", "doctor", PASSWORD,
                            must_change_password=False).actor()
    secret = twofactor.begin_enrolment(doc).secret
    first = pyotp.TOTP(secret).now()
    recovery = twofactor.confirm_enrolment(doc, first)
    from core import jobs
    from core.db.models import Job
    from core.services import ingest

    tina = users.authenticate("tina", PASSWORD).actor()
    image_id = ingest.ingest_files(tina, [("queued.png", png_bytes(64, 64, seed=77))]).results[0].image_id
    job_id = jobs.enqueue_protect(tina, [image_id], detect=False).id  # no worker runs here: it waits
    runtime_mod.reset()
    times = {}
    with sync_playwright() as p:
        for who, heading in (("tina", "Upload"), ("dana", "Patients")):
            ctx = browser(p, tmp_path / f"profile-{who}")
            try:
                page = ctx.new_page()
                page.goto(url)
                sign_in(page, who, PASSWORD)
                t0 = time.monotonic()
                waited = 0.0  # the person typing the code, and this test waiting for a fresh one, do not count
                if who == "dana":
                    box = page.get_by_role("textbox", name="Authentication code")
                    box.wait_for(timeout=30_000)
                    w0 = time.monotonic()
                    settle(page)
                    code = pyotp.TOTP(secret).now()
                    while code == first:  # the enrolment used this step's code: a replay is refused
                        page.wait_for_timeout(1000)
                        code = pyotp.TOTP(secret).now()
                    box.fill(code)
                    waited = time.monotonic() - w0
                    page.get_by_role("button", name="Verify").click()
                expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=30_000)
                times[who] = time.monotonic() - t0 - waited
                page.screenshot(path=str(ARTIFACTS / f"browser-signin-{who}.png"))
            finally:
                ctx.close()
        # a recovery code instead of the app works once; a second use is refused
        for attempt_no in (1, 2):
            ctx = browser(p, tmp_path / f"profile-recovery-{attempt_no}")
            try:
                page = ctx.new_page()
                page.goto(url)
                sign_in(page, "dana", PASSWORD)
                box = page.get_by_role("textbox", name="Authentication code")
                box.wait_for(timeout=30_000)
                settle(page)
                box.fill(recovery[0])
                page.get_by_role("button", name="Verify").click()
                if attempt_no == 1:
                    expect(page.get_by_role("heading", name="Patients", exact=True)).to_be_visible(timeout=30_000)
                else:
                    expect(page.get_by_text("Wrong or already used code.")).to_be_visible(timeout=30_000)
                    expect(page.get_by_role("heading", name="Patients", exact=True)).to_have_count(0)
            finally:
                ctx.close()
        # the admin cancels the waiting job on the System page, then queues it again
        ctx = browser(p, tmp_path / "profile-admin", height=1600)
        try:
            page = ctx.new_page()
            page.goto(url)
            sign_in(page, "admin", ADMIN_PASSWORD)
            expect(page.get_by_role("heading", name="Admin · users", exact=True)).to_be_visible(timeout=30_000)
            page.get_by_role("link", name="System").click()
            expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible(timeout=30_000)
            settle(page)
            page.get_by_role("button", name="Cancel job").click()
            expect(page.get_by_text(f"Job #{job_id}: cancelled.")).to_be_visible(timeout=30_000)
            settle(page)
            page.get_by_role("button", name="Retry job").click()
            expect(page.get_by_text(f"Job #{job_id} queued again.")).to_be_visible(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "browser-system.png"))
        finally:
            ctx.close()
    runtime_mod.reset()
    rt = runtime_mod.configure(make_settings(tmp_path, f"sqlite:///{data / 'medshield.db'}"))
    with rt.session() as s:
        assert s.get(Job, job_id).status == "queued"
        from sqlmodel import select

        from core.db.models import AuditEvent

        actions = [e.action for e in s.exec(select(AuditEvent)).all()]
    runtime_mod.reset()
    assert "job.cancel" in actions and "job.retry" in actions and "auth.2fa" in actions
    (ARTIFACTS / "signin-times.json").write_text(json.dumps(
        {"password_only_s": round(times["tina"], 2), "password_and_totp_s": round(times["dana"], 2)}))
    print(f"sign-in to first page: password only {times['tina']:.2f} s, with a TOTP code {times['dana']:.2f} s")
