"""TOTP second factor, in core: enrolment, sign-in's second step, replay and lockout, recovery codes
used once, disabling, the admin's reset, the per-role policy enforced by core, and the seeds
re-wrapped by a master-key rotation."""

from __future__ import annotations

import pyotp
import pytest
from sqlmodel import select

from core.db.models import AuditEvent, RecoveryCode, User
from core.errors import AccessDenied, AccountLocked, AuthenticationFailed, Conflict
from core.services import keys, patients, twofactor, users
from tests.conftest import PASSWORD, admin_actor

T0 = 1_800_000_000.0  # a fixed clock: codes are computed for known time steps


@pytest.fixture
def clock(monkeypatch):
    now = [T0]
    monkeypatch.setattr(twofactor, "_now", lambda: now[0])
    return now


def enrol(actor, clock) -> tuple[str, list[str]]:
    e = twofactor.begin_enrolment(actor)
    assert e.qr_png.startswith(b"\x89PNG") and e.uri.startswith("otpauth://totp/MedShield:")
    assert e.secret not in repr(e)
    codes = twofactor.confirm_enrolment(actor, pyotp.TOTP(e.secret).at(clock[0]))
    return e.secret, codes


def code(secret: str, t: float) -> str:
    return pyotp.TOTP(secret).at(t)


def test_enrol_then_sign_in_with_a_code_once(rt, make_user, clock):
    doc = make_user("doctor", "drwho")
    secret, codes = enrol(doc, clock)
    assert len(codes) == 10 and len(set(codes)) == 10
    with rt.session() as s:
        u = s.get(User, doc.user_id)
        assert u.totp_enabled and secret.encode() not in bytes(u.totp_wrapped)  # wrapped, never in clear
        stored = s.exec(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == doc.user_id)).all()
    assert len(stored) == 10 and not set(codes) & set(stored) and all(h.startswith("$2") for h in stored)
    assert users.authenticate("drwho", PASSWORD).totp_enabled
    clock[0] += 60
    now_code = code(secret, clock[0])
    assert twofactor.verify("drwho", now_code).username == "drwho"
    with pytest.raises(AuthenticationFailed, match="already used"):
        twofactor.verify("drwho", now_code)  # a replay inside its window
    clock[0] += 30
    assert twofactor.verify("drwho", code(secret, clock[0])).username == "drwho"  # the next step's code


def test_replay_window_and_clock_drift(rt, make_user, clock):
    doc = make_user("doctor")
    secret, _ = enrol(doc, clock)
    clock[0] += 300
    twofactor.verify(doc.username, code(secret, clock[0] + 30))  # the app's clock is 30 s ahead: accepted
    with pytest.raises(AuthenticationFailed):
        twofactor.verify(doc.username, code(secret, clock[0]))  # an older step than the one accepted
    clock[0] += 300
    with pytest.raises(AuthenticationFailed):
        twofactor.verify(doc.username, code(secret, clock[0] - 120))  # four steps old


def test_wrong_codes_count_toward_the_lockout(rt, make_user, clock):
    doc = make_user("doctor")
    secret, _ = enrol(doc, clock)
    for _ in range(rt.settings.lockout_attempts - 1):
        with pytest.raises(AuthenticationFailed, match="Wrong"):
            twofactor.verify(doc.username, "000000")
    with pytest.raises(AccountLocked):
        twofactor.verify(doc.username, "000000")
    clock[0] += 60
    with pytest.raises(AccountLocked):
        twofactor.verify(doc.username, code(secret, clock[0]))  # locked: even a good code waits
    with pytest.raises(AccountLocked):
        users.authenticate(doc.username, PASSWORD)
    with rt.session() as s:
        details = [e.detail for e in s.exec(select(AuditEvent).where(AuditEvent.action == "auth.2fa")).all()]
    assert any("account locked" in d for d in details)


def test_a_recovery_code_works_once(rt, make_user, clock):
    doc = make_user("doctor")
    _, codes = enrol(doc, clock)
    assert twofactor.verify(doc.username, codes[3]).username == doc.username
    with pytest.raises(AuthenticationFailed):
        twofactor.verify(doc.username, codes[3])
    assert twofactor.status(doc)["recovery_codes_left"] == 9


def test_disable_needs_password_and_code_and_admin_can_reset(rt, make_user, clock):
    doc = make_user("doctor")
    secret, codes = enrol(doc, clock)
    with pytest.raises(Conflict):
        twofactor.begin_enrolment(doc)
    clock[0] += 60
    with pytest.raises(AuthenticationFailed):
        twofactor.disable(doc, "wrong-password-1", code(secret, clock[0]))
    with pytest.raises(AuthenticationFailed):
        twofactor.disable(doc, PASSWORD, "123456")
    twofactor.disable(doc, PASSWORD, codes[0])
    assert not twofactor.status(doc)["enabled"]
    enrol(doc, clock)
    twofactor.reset(admin_actor(rt), doc.user_id)
    with rt.session() as s:
        u = s.get(User, doc.user_id)
        assert not u.totp_enabled and u.totp_wrapped is None
        assert not s.exec(select(RecoveryCode).where(RecoveryCode.user_id == doc.user_id)).all()
        assert s.exec(select(AuditEvent).where(AuditEvent.action == "2fa.reset")).first() is not None
    with pytest.raises(AccessDenied):
        twofactor.reset(doc, doc.user_id)  # only admins reset


def test_the_policy_is_enforced_in_core(rt, make_user, clock, monkeypatch):
    doc, tech = make_user("doctor"), make_user("technician")
    monkeypatch.delenv("MEDSHIELD_2FA_ROLES")
    assert twofactor.required_roles() == ("admin", "doctor")
    with pytest.raises(AccessDenied, match="second factor"):
        patients.search_patients(doc, "")
    patients.search_patients(tech, "")  # technicians are not in the default policy
    assert twofactor.status(doc)["required"]  # their own account stays open, to enrol
    enrol(doc, clock)
    patients.search_patients(doc, "")
    with pytest.raises(AccessDenied, match="second factor"):  # the bootstrap admin must enrol too
        twofactor.set_required_roles(admin_actor(rt), ["admin"])
    monkeypatch.setenv("MEDSHIELD_2FA_ROLES", "")
    twofactor.set_required_roles(admin_actor(rt), ["technician"])
    monkeypatch.delenv("MEDSHIELD_2FA_ROLES")
    assert twofactor.required_roles() == ("technician",)  # the admin's setting wins over the default
    with pytest.raises(AccessDenied):
        patients.search_patients(tech, "")


def test_rotation_rewraps_the_seeds(rt, make_user, clock):
    doc = make_user("doctor")
    secret, _ = enrol(doc, clock)
    with rt.session() as s:
        before = s.get(User, doc.user_id).totp_key_id
    keys.rotate_master_key(admin_actor(rt))
    with rt.session() as s:
        u = s.get(User, doc.user_id)
        assert u.totp_key_id == rt.keyring.current.id != before
    clock[0] += 60
    assert twofactor.verify(doc.username, code(secret, clock[0])).username == doc.username


def test_cli_asks_for_the_code(rt, make_user, clock, monkeypatch, capsys):
    from core import cli

    tech = make_user("technician", "clitf")
    secret, _ = enrol(tech, clock)
    monkeypatch.setenv("MEDSHIELD_PASSWORD", PASSWORD)
    monkeypatch.delenv("MEDSHIELD_TOTP_CODE", raising=False)
    assert cli.main(["verify-audit", "--user", "clitf"], configure=False) == 2
    assert "second factor" in capsys.readouterr().err
    clock[0] += 60
    monkeypatch.setenv("MEDSHIELD_TOTP_CODE", code(secret, clock[0]))
    cli.main(["verify-audit", "--user", "clitf"], configure=False)  # signed in: refused as a technician
    assert "does not allow" in capsys.readouterr().err
