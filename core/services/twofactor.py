"""TOTP second factor (RFC 6238, pyotp): enrolment with a QR code (segno, drawn here, no network),
confirmation by a first code, ten one-time recovery codes (bcrypt hashes, shown once), sign-in's
second step, disabling with password + code, the admin's reset and the per-role policy.

The seed is wrapped by the master key (core.crypto.keys.wrap_secret) and re-wrapped by a rotation.
A wrong code counts toward the account lockout like a wrong password; a code is accepted once
(its time step must be newer than the last accepted one), so a replay inside its window is refused.
A role the policy requires 2FA for can do nothing but manage its own account until enrolled: that
is enforced in core (core.security), whatever a page shows.
"""

from __future__ import annotations

import io
import secrets
import time
from dataclasses import dataclass


import bcrypt
from sqlmodel import select

from core import audit
from core.crypto.keys import unwrap_secret, wrap_secret
from core.db.models import RecoveryCode, Setting, User, utcnow
from core.errors import AccountLocked, AuthenticationFailed, Conflict, NotFound, ValidationError
from core.runtime import get_runtime
from core.security import ROLES, TWO_FACTOR_SETTING, Actor, Permission, service, two_factor_roles
from core.timeutil import as_utc

PURPOSE = "totp"
ISSUER = "MedShield"
STEP = 30
RECOVERY_CODES = 10
POLICY_KEY = TWO_FACTOR_SETTING


@dataclass(frozen=True)
class Enrolment:
    secret: str  # base32, to type into an authenticator app by hand
    uri: str  # otpauth:// URI the QR code holds
    qr_png: bytes

    def __repr__(self) -> str:  # never print the seed
        return "Enrolment(<secret>)"


def _now() -> float:
    return time.time()


# ---------------------------------------------------------------- policy

required_roles = two_factor_roles


def needs_enrolment(user: User, session=None) -> bool:
    return not user.totp_enabled and user.role in two_factor_roles(session)


@service(Permission.SETTINGS_MANAGE)
def set_required_roles(actor: Actor, roles: list[str]) -> tuple[str, ...]:
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise ValidationError(f"Unknown role(s): {', '.join(bad)}.")
    rt = get_runtime()
    with rt.session() as s:
        row = s.get(Setting, POLICY_KEY) or Setting(key=POLICY_KEY)
        row.value, row.updated_by, row.updated_at = {"required_roles": sorted(set(roles))}, actor.user_id, utcnow()
        s.add(row)
    audit.record(rt.engine, actor.username, actor.role, "2fa.policy", "success", object_type="setting",
                 object_id=POLICY_KEY, detail="required=" + ",".join(sorted(set(roles))))
    return tuple(sorted(set(roles)))


# ---------------------------------------------------------------- codes

def _totp(secret: str):
    import pyotp

    return pyotp.TOTP(secret, interval=STEP)


def _secret(user: User) -> str:
    rt = get_runtime()
    if user.totp_wrapped is None or user.totp_key_id is None:
        raise NotFound("No second factor is set up for this account.")
    return unwrap_secret(rt.keyring.by_id(user.totp_key_id), PURPOSE, user.id, bytes(user.totp_wrapped)).decode()


def _matching_step(secret: str, code: str, last_step: int | None, now: float | None = None) -> int | None:
    """The time step (this one or one either side, for clock drift) whose code this is, if newer than
    the last accepted step."""
    code = (code or "").strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    t = _totp(secret)
    step = int((now if now is not None else _now()) // STEP)
    for s in (step - 1, step, step + 1):
        if secrets.compare_digest(t.at(s * STEP), code) and (last_step is None or s > last_step):
            return s
    return None


def _new_recovery_codes(s, user: User) -> list[str]:
    rounds = get_runtime().settings.bcrypt_rounds
    for old in s.exec(select(RecoveryCode).where(RecoveryCode.user_id == user.id)).all():
        s.delete(old)
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = secrets.token_hex(5)  # 40 bits each, one use
        code = f"{raw[:5]}-{raw[5:]}"
        codes.append(code)
        s.add(RecoveryCode(user_id=user.id, code_hash=bcrypt.hashpw(code.encode(), bcrypt.gensalt(rounds)).decode()))
    return codes


def _use_recovery_code(s, user: User, code: str) -> bool:
    code = (code or "").strip().lower()
    if len(code) != 11 or code[5] != "-":
        return False
    for row in s.exec(select(RecoveryCode).where(RecoveryCode.user_id == user.id,
                                                 RecoveryCode.used_at.is_(None))).all():  # type: ignore[union-attr]
        if bcrypt.checkpw(code.encode(), row.code_hash.encode()):
            row.used_at = utcnow()
            s.add(row)
            return True
    return False


def _check(s, user: User, code: str) -> str | None:
    """'totp' or 'recovery' when the code is good (and now used), else None."""
    step = _matching_step(_secret(user), code, user.totp_last_step)
    if step is not None:
        user.totp_last_step = step
        s.add(user)
        return "totp"
    if _use_recovery_code(s, user, code):
        return "recovery"
    return None


# ---------------------------------------------------------------- own account

@service(Permission.ACCOUNT_SELF)
def status(actor: Actor) -> dict:
    with get_runtime().session() as s:
        user = s.get(User, actor.user_id)
        left = len(s.exec(select(RecoveryCode).where(RecoveryCode.user_id == actor.user_id,
                                                     RecoveryCode.used_at.is_(None))).all())  # type: ignore[union-attr]
        return {"enabled": bool(user.totp_enabled), "required": user.role in required_roles(s),
                "recovery_codes_left": left if user.totp_enabled else 0,
                "enabled_at": as_utc(user.totp_enabled_at)}


@service(Permission.ACCOUNT_SELF)
def begin_enrolment(actor: Actor) -> Enrolment:
    """A fresh seed, kept wrapped and not yet in force until `confirm_enrolment` sees a first code."""
    import pyotp
    import segno

    rt = get_runtime()
    with rt.session() as s:
        user = s.get(User, actor.user_id)
        if user.totp_enabled:
            raise Conflict("Two-factor sign-in is already on: turn it off first to enrol a new device.")
        secret = pyotp.random_base32()
        user.totp_wrapped = wrap_secret(rt.keyring.current, PURPOSE, user.id, secret.encode())
        user.totp_key_id, user.totp_last_step = rt.keyring.current.id, None
        s.add(user)
        uri = _totp(secret).provisioning_uri(name=user.username, issuer_name=ISSUER)
    buf = io.BytesIO()
    segno.make(uri, error="m").save(buf, kind="png", scale=6, border=2)
    audit.record(rt.engine, actor.username, actor.role, "2fa.enrol", "started", object_type="user",
                 object_id=actor.username)
    return Enrolment(secret, uri, buf.getvalue())


@service(Permission.ACCOUNT_SELF)
def confirm_enrolment(actor: Actor, code: str) -> list[str]:
    """Turn the second factor on with a first code from the app; returns the recovery codes (shown once)."""
    rt = get_runtime()
    with rt.session() as s:
        user = s.get(User, actor.user_id)
        if user.totp_enabled:
            raise Conflict("Two-factor sign-in is already on.")
        if user.totp_wrapped is None:
            raise ValidationError("Start the enrolment first.")
        step = _matching_step(_secret(user), code, None)
        if step is None:
            audit.record(rt.engine, actor.username, actor.role, "2fa.enrol", "failure", object_type="user",
                         object_id=actor.username, detail="wrong code")
            raise AuthenticationFailed("That code does not match: check the device's clock and type the current code.")
        user.totp_enabled, user.totp_last_step, user.totp_enabled_at = True, step, utcnow()
        s.add(user)
        codes = _new_recovery_codes(s, user)
    audit.record(rt.engine, actor.username, actor.role, "2fa.enrol", "success", object_type="user",
                 object_id=actor.username)
    return codes


@service(Permission.ACCOUNT_SELF)
def new_recovery_codes(actor: Actor, code: str) -> list[str]:
    rt = get_runtime()
    with rt.session() as s:
        user = s.get(User, actor.user_id)
        if not user.totp_enabled:
            raise ValidationError("Two-factor sign-in is off.")
        if _check(s, user, code) != "totp":
            raise AuthenticationFailed("That code does not match.")
        codes = _new_recovery_codes(s, user)
    audit.record(rt.engine, actor.username, actor.role, "2fa.recovery_codes", "success", object_type="user",
                 object_id=actor.username)
    return codes


@service(Permission.ACCOUNT_SELF)
def disable(actor: Actor, password: str, code: str) -> None:
    """Turn the second factor off: needs the password and a current code (or a recovery code)."""
    from core.services.users import _verify

    rt = get_runtime()
    with rt.session() as s:
        user = s.get(User, actor.user_id)
        if not user.totp_enabled:
            raise ValidationError("Two-factor sign-in is already off.")
        ok = _verify(password or "", user.password_hash) and _check(s, user, code) is not None
        if ok:
            _clear(s, user)
    audit.record(rt.engine, actor.username, actor.role, "2fa.disable", "success" if ok else "failure",
                 object_type="user", object_id=actor.username)
    if not ok:
        raise AuthenticationFailed("Wrong password or code.")


def _clear(s, user: User) -> None:
    user.totp_enabled, user.totp_wrapped, user.totp_key_id = False, None, None
    user.totp_last_step, user.totp_enabled_at = None, None
    s.add(user)
    for row in s.exec(select(RecoveryCode).where(RecoveryCode.user_id == user.id)).all():
        s.delete(row)


@service(Permission.USER_MANAGE)
def reset(actor: Actor, user_id: int) -> None:
    """The admin's reset for a lost device: the user enrols again at next sign-in."""
    rt = get_runtime()
    with rt.session() as s:
        user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"No user with id {user_id}.")
        _clear(s, user)
        name = user.username
    audit.record(rt.engine, actor.username, actor.role, "2fa.reset", "success", object_type="user", object_id=name)


# ---------------------------------------------------------------- sign-in's second step (no actor yet)

def verify(username: str, code: str):
    """The second step after a good password: a current TOTP code (once) or an unused recovery code.
    A wrong code counts toward the lockout. Returns the UserInfo."""
    from core.services.users import _info, _normalise_username, count_failure

    rt = get_runtime()
    uname = _normalise_username(username)
    with rt.session() as s:
        user = s.exec(select(User).where(User.username == uname)).first()
        now = utcnow()
        exc, how = None, None
        if user is None or not user.is_active or not user.totp_enabled:
            exc, detail = AuthenticationFailed("Sign in with your password first."), "no second factor"
        elif as_utc(user.locked_until) and as_utc(user.locked_until) > now:  # type: ignore[operator]
            exc, detail = AccountLocked("This account is locked after too many failed attempts. Try again later "
                                        "or ask an administrator to unlock it."), "account locked"
        else:
            how = _check(s, user, code)
            if how is not None:
                user.failed_attempts, user.locked_until, user.last_login_at = 0, None, now
                detail = "recovery code" if how == "recovery" else "totp"
            else:
                detail, exc = count_failure(user, "wrong code", AuthenticationFailed("Wrong or already used code."))
            s.add(user)
        info = _info(user) if user is not None else None
        role = user.role if user else ""
    audit.record(rt.engine, uname, role, "auth.2fa", "success" if exc is None else "failure", object_type="user",
                 object_id=uname, detail=detail)
    if exc is not None:
        raise exc
    return info


def rewrap(new) -> int:
    """Re-wrap every TOTP seed under the new master key (a rotation's part; no actor: keys.rotate checks)."""
    rt = get_runtime()
    n = 0
    with rt.session() as s:
        for user in s.exec(select(User).where(User.totp_wrapped.is_not(None),  # type: ignore[union-attr]
                                              User.totp_key_id != new.id)).all():
            seed = unwrap_secret(rt.keyring.by_id(user.totp_key_id), PURPOSE, user.id, bytes(user.totp_wrapped))
            user.totp_wrapped, user.totp_key_id = wrap_secret(new, PURPOSE, user.id, seed), new.id
            s.add(user)
            n += 1
    return n
