from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from core.db.models import AuditEvent, User, utcnow
from core.errors import AccountLocked, AuthenticationFailed, ValidationError
from core.services import users
from tests.conftest import ADMIN_PASSWORD, PASSWORD


def _audit(rt, action):
    with rt.session() as s:
        return s.exec(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)).all()


def test_passwords_are_bcrypt_hashed(rt, make_user):
    make_user("doctor", "dana")
    with rt.session() as s:
        u = s.exec(select(User).where(User.username == "dana")).one()
    assert u.password_hash.startswith("$2") and PASSWORD not in u.password_hash


def test_login_success_and_failure_are_audited(rt, make_user):
    make_user("doctor", "dana")
    assert users.authenticate("Dana ", PASSWORD).role == "doctor"
    with pytest.raises(AuthenticationFailed):
        users.authenticate("dana", "wrong-password")
    with pytest.raises(AuthenticationFailed, match="Wrong user name or password"):
        users.authenticate("nobody", "whatever-123")
    outcomes = [(e.username, e.outcome) for e in _audit(rt, "auth.login")]
    assert outcomes == [("dana", "success"), ("dana", "failure"), ("nobody", "failure")]
    assert all(PASSWORD not in e.detail and "wrong-password" not in e.detail for e in _audit(rt, "auth.login"))


def test_lockout_after_five_failures_then_unlock(rt, admin, make_user):
    tech = make_user("technician", "tom")
    for _ in range(4):
        with pytest.raises(AuthenticationFailed):
            users.authenticate("tom", "bad-password")
    with pytest.raises(AccountLocked):
        users.authenticate("tom", "bad-password")  # 5th failure locks
    with pytest.raises(AccountLocked):
        users.authenticate("tom", PASSWORD)  # even the right password is refused now
    assert users.session_user("tom") is None
    users.unlock(admin, tech.user_id)
    assert users.authenticate("tom", PASSWORD).username == "tom"


def test_lock_expires(rt, make_user):
    make_user("technician", "tim")
    with rt.session() as s:
        u = s.exec(select(User).where(User.username == "tim")).one()
        u.failed_attempts, u.locked_until = 5, utcnow() - timedelta(seconds=1)
        s.add(u)
    assert users.authenticate("tim", PASSWORD).failed_attempts == 0


def test_disabled_user_cannot_log_in(rt, admin, make_user):
    doc = make_user("doctor", "dora")
    users.set_active(admin, doc.user_id, False)
    with pytest.raises(AuthenticationFailed, match="disabled"):
        users.authenticate("dora", PASSWORD)
    assert "dora" not in users.login_directory()["usernames"]
    users.set_active(admin, doc.user_id, True)
    assert users.authenticate("dora", PASSWORD)


def test_reset_password_forces_change(rt, admin, make_user):
    doc = make_user("doctor", "dick")
    temp = users.reset_password(admin, doc.user_id)
    with pytest.raises(AuthenticationFailed):
        users.authenticate("dick", PASSWORD)
    info = users.authenticate("dick", temp)
    assert info.must_change_password
    with pytest.raises(ValidationError):
        users.change_own_password(doc, temp, "short")
    with pytest.raises(AuthenticationFailed):
        users.change_own_password(doc, "not-the-temp", "brand-new-pass")
    users.change_own_password(doc, temp, "brand-new-pass")
    assert not users.authenticate("dick", "brand-new-pass").must_change_password


def test_admin_user_management(rt, admin):
    u = users.create_user(admin, "Nina.Nurse", "Nina", "technician", "long-enough-1")
    assert u.username == "nina.nurse" and u.must_change_password
    with pytest.raises(Exception, match="taken"):
        users.create_user(admin, "nina.nurse", "Nina 2", "doctor", "long-enough-1")
    with pytest.raises(ValidationError):
        users.create_user(admin, "bad name!", "X", "doctor", "long-enough-1")
    with pytest.raises(ValidationError):
        users.create_user(admin, "ok", "X", "superuser", "long-enough-1")
    assert users.set_role(admin, u.id, "doctor").role == "doctor"
    with pytest.raises(ValidationError):
        users.set_active(admin, admin.user_id, False)
    with pytest.raises(ValidationError):
        users.set_role(admin, admin.user_id, "doctor")
    actions = [e.action for e in _audit(rt, "user.create")] + [e.action for e in _audit(rt, "user.set_role")]
    assert actions == ["user.create", "user.set_role"]


def test_first_admin_from_environment(rt):
    assert users.authenticate("admin", ADMIN_PASSWORD).role == "admin"


def test_first_admin_one_time_password(tmp_path, capsys, monkeypatch):
    from core import runtime
    from tests.conftest import make_settings

    monkeypatch.delenv("MEDSHIELD_QUIET_BOOTSTRAP", raising=False)
    runtime.reset()
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'x.db'}").with_overrides(admin_password=None)
    try:
        runtime.configure(settings)
        out = capsys.readouterr().err
        temp = out.split("one-time password:")[1].split()[0]
        info = users.authenticate("admin", temp)
        assert info.must_change_password
        runtime.configure(settings)  # a second start creates nothing and prints nothing
        assert "one-time password" not in capsys.readouterr().err
    finally:
        runtime.reset()
