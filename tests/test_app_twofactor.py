"""Two-factor sign-in through the real pages (AppTest): a doctor whose role requires it is sent to
enrol, enrols with the QR page's key, signs in with a code, uses a recovery code once (a second use is
refused), and the admin resets a lost device."""

from __future__ import annotations

import time

import pyotp
from streamlit.testing.v1 import AppTest

from core.services import users
from tests.conftest import ADMIN_PASSWORD, PASSWORD, admin_actor
from tests.test_app import HOME, app_rt, headers, login  # noqa: F401  (fixture)


def _code_form(at: AppTest, code: str) -> AppTest:
    [t for t in at.text_input if t.label == "Authentication code"][0].input(code)
    [b for b in at.button if b.label == "Verify"][0].click().run()
    assert not at.exception, at.exception
    return at


def _fresh_code(secret: str, used: set[str]) -> str:
    """The current code, waiting for the next time step if this one was used already (replay is refused)."""
    while (c := pyotp.TOTP(secret).now()) in used:
        time.sleep(1)
    used.add(c)
    return c


def test_enrol_sign_in_with_a_code_and_a_recovery_code_once(app_rt, monkeypatch):
    monkeypatch.setenv("MEDSHIELD_2FA_ROLES", "doctor")
    at = login("doct", PASSWORD)
    assert "My account" in headers(at)  # sent to enrol: nothing else is reachable
    assert any("second factor" in w.value for w in at.warning)
    [b for b in at.button if b.label == "Set up two-factor sign-in"][0].click().run()
    secret = at.session_state["enrolment"].secret
    assert any(secret[:4] in c.value.replace(" ", "") for c in at.code)  # the key is shown as text
    used: set[str] = set()
    [t for t in at.text_input if t.label == "Code from the app"][0].input(_fresh_code(secret, used))
    [b for b in at.button if b.label == "Turn on"][0].click().run()
    assert not at.exception, at.exception
    codes = [c.value for c in at.code if "-" in c.value][0].split("\n")
    assert len(codes) == 10

    at = login("doct", PASSWORD)  # a new browser session: the password, then the code
    assert any(s.value == "Two-factor sign-in" for s in at.subheader)
    assert not at.session_state["authentication_status"]
    at = _code_form(at, "000000")
    assert any("Wrong or already used" in e.value for e in at.error)
    at = _code_form(at, _fresh_code(secret, used))
    assert at.session_state["authentication_status"] is True and "Patients" in headers(at)

    at = _code_form(login("doct", PASSWORD), codes[0])  # a recovery code instead of the app
    assert at.session_state["authentication_status"] is True
    at = _code_form(login("doct", PASSWORD), codes[0])  # ... works once
    assert not at.session_state["authentication_status"]
    assert any("Wrong or already used" in e.value for e in at.error)


def test_admin_resets_a_lost_device(app_rt, monkeypatch):
    from core.services import twofactor

    monkeypatch.setenv("MEDSHIELD_2FA_ROLES", "")
    doc = users.authenticate("doct", PASSWORD).actor()
    e = twofactor.begin_enrolment(doc)
    twofactor.confirm_enrolment(doc, pyotp.TOTP(e.secret).now())
    at = login("admin", ADMIN_PASSWORD)
    at.selectbox(key="admin_pick").select("doct").run()
    [b for b in at.button if b.label == "Reset 2FA"][0].click().run()
    assert not at.exception, at.exception
    assert not users.authenticate("doct", PASSWORD).totp_enabled
    at = login("doct", PASSWORD)
    assert at.session_state["authentication_status"] is True  # no second step any more
