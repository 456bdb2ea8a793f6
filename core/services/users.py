"""Accounts: login with lockout, and the admin's user management."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import select

from core import audit, passwords
from core.db.models import User, utcnow
from core.errors import AccountLocked, AuthenticationFailed, Conflict, NotFound, ValidationError
from core.runtime import get_runtime
from core.security import ROLES, Actor, Permission, service
from core.timeutil import as_utc

_USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


def hash_password(password: str) -> str:
    return passwords.hash_password(password, get_runtime().settings.bcrypt_rounds)


def _dummy() -> str:
    return passwords.dummy_hash(get_runtime().settings.bcrypt_rounds)


_verify = passwords.verify
_check_password_shape = passwords.check_password_shape


@dataclass(frozen=True)
class UserInfo:
    id: int
    username: str
    name: str
    email: str
    role: str
    is_active: bool
    failed_attempts: int
    locked_until: datetime | None
    must_change_password: bool
    created_at: datetime
    last_login_at: datetime | None
    totp_enabled: bool = False

    @property
    def is_locked(self) -> bool:
        return self.locked_until is not None and self.locked_until > utcnow()

    def actor(self) -> Actor:
        return Actor(self.id, self.username, self.role)


def _info(u: User) -> UserInfo:
    return UserInfo(
        id=u.id, username=u.username, name=u.name, email=u.email, role=u.role,  # type: ignore[arg-type]
        is_active=u.is_active, failed_attempts=u.failed_attempts,
        locked_until=as_utc(u.locked_until), must_change_password=u.must_change_password,
        created_at=as_utc(u.created_at), last_login_at=as_utc(u.last_login_at),  # type: ignore[arg-type]
        totp_enabled=bool(u.totp_enabled),
    )


def _normalise_username(username: str) -> str:
    return (username or "").strip().lower()


# ---------------------------------------------------------------- login (no actor yet)

def authenticate(username: str, password: str) -> UserInfo:
    """Check a password. Locks the account after N failures for M minutes; audits every attempt."""
    rt = get_runtime()
    uname = _normalise_username(username)
    with rt.session() as s:
        user = s.exec(select(User).where(User.username == uname)).first()
        now = utcnow()
        if user is None:
            _verify(password or "", _dummy())  # same time as a real check
            outcome, reason, exc = "failure", "unknown user", AuthenticationFailed(
                "Wrong user name or password.")
        elif not user.is_active:
            outcome, reason, exc = "failure", "account disabled", AuthenticationFailed(
                "This account is disabled. Ask an administrator.")
        elif as_utc(user.locked_until) and as_utc(user.locked_until) > now:  # type: ignore[operator]
            until = as_utc(user.locked_until)
            outcome, reason, exc = "denied", "account locked", AccountLocked(
                f"This account is locked after {rt.settings.lockout_attempts} failed attempts, "
                f"until {until:%H:%M} UTC. Try again later or ask an administrator to unlock it.")
        elif _verify(password or "", user.password_hash):
            user.failed_attempts = 0
            user.locked_until = None
            user.last_login_at = now
            s.add(user)
            info = _info(user)
            outcome, reason, exc = "success", "", None
        else:
            reason, exc = count_failure(user, "wrong password", AuthenticationFailed("Wrong user name or password."))
            s.add(user)
            outcome = "failure"
        role = user.role if user else ""
    audit.record(rt.engine, uname, role, "auth.login", outcome, object_type="user",
                 object_id=uname, detail=reason)
    if exc is not None:
        raise exc
    return info


def count_failure(user: User, what: str, exc: AuthenticationFailed) -> tuple[str, AuthenticationFailed]:
    """One more failed sign-in step (a wrong password or a wrong code): locks the account for M minutes
    at the N-th in a row. Returns the audit detail and the error to raise."""
    rt = get_runtime()
    if user.locked_until is not None:  # an old lock ran out: start counting afresh
        user.failed_attempts, user.locked_until = 0, None
    user.failed_attempts += 1
    detail = f"{what} ({user.failed_attempts})"
    if user.failed_attempts >= rt.settings.lockout_attempts:
        user.locked_until = utcnow() + timedelta(minutes=rt.settings.lockout_minutes)
        detail += "; account locked"
        exc = AccountLocked(f"Too many failed attempts: this account is locked for {rt.settings.lockout_minutes} minutes.")
    return detail, exc


def session_user(username: str) -> UserInfo | None:
    """The logged-in user's current record, or None when disabled, locked or deleted (a cookie
    from before the change must not keep them in)."""
    with get_runtime().session() as s:
        user = s.exec(select(User).where(User.username == _normalise_username(username))).first()
        if user is None or not user.is_active:
            return None
        info = _info(user)
        return None if info.is_locked else info


def login_directory() -> dict:
    """The credentials mapping streamlit-authenticator wants, for active users. It carries no
    password hashes: passwords are checked by `authenticate` in core only."""
    with get_runtime().session() as s:
        users = s.exec(select(User).where(User.is_active == True)).all()  # noqa: E712
        return {"usernames": {
            u.username: {"name": u.name, "email": u.email or f"{u.username}@localhost",
                         "password": "!", "roles": [u.role], "failed_login_attempts": 0,
                         "logged_in": False}
            for u in users
        }}


def record_logout(username: str, role: str, reason: str = "") -> None:
    audit.record(get_runtime().engine, username, role, "auth.logout", "success",
                 object_type="user", object_id=username, detail=reason)


# ---------------------------------------------------------------- own account

@service(Permission.ACCOUNT_SELF)
def change_own_password(actor: Actor, old_password: str, new_password: str) -> None:
    rt = get_runtime()
    if old_password == new_password:
        raise ValidationError("The new password must differ from the current one.")
    new_hash = hash_password(new_password)
    with rt.session() as s:
        user = s.get(User, actor.user_id)
        if user is None:
            raise NotFound("Your account no longer exists.")
        role = user.role
        ok = _verify(old_password or "", user.password_hash)
        if ok:
            user.password_hash = new_hash
            user.must_change_password = False
            s.add(user)
    if not ok:
        audit.record(rt.engine, actor.username, role, "user.change_password", "failure",
                     object_type="user", object_id=actor.username, detail="wrong current password")
        raise AuthenticationFailed("The current password is wrong.")
    audit.record(rt.engine, actor.username, role, "user.change_password", "success",
                 object_type="user", object_id=actor.username)


# ---------------------------------------------------------------- admin

def _get(s, user_id: int) -> User:
    user = s.get(User, user_id)
    if user is None:
        raise NotFound(f"No user with id {user_id}.")
    return user


def _admin_audit(actor: Actor, action: str, target: str, detail: str = "") -> None:
    audit.record(get_runtime().engine, actor.username, actor.role, action, "success",
                 object_type="user", object_id=target, detail=detail)


@service(Permission.USER_MANAGE)
def list_users(actor: Actor) -> list[UserInfo]:
    with get_runtime().session() as s:
        return [_info(u) for u in s.exec(select(User).order_by(User.username)).all()]


@service(Permission.USER_MANAGE)
def create_user(actor: Actor, username: str, name: str, role: str, password: str,
                email: str = "", must_change_password: bool = True) -> UserInfo:
    uname = _normalise_username(username)
    if not _USERNAME_RE.match(uname):
        raise ValidationError(
            "A user name has 2-64 characters: lower-case letters, digits, '.', '_' or '-'.")
    if role not in ROLES:
        raise ValidationError(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}.")
    if not (name or "").strip():
        raise ValidationError("Give the user's full name.")
    hashed = hash_password(password)
    with get_runtime().session() as s:
        if s.exec(select(User).where(User.username == uname)).first():
            raise Conflict(f"The user name '{uname}' is taken.")
        user = User(username=uname, name=name.strip()[:128], email=(email or "").strip()[:254],
                    role=role, password_hash=hashed, must_change_password=must_change_password)
        s.add(user)
        s.flush()
        info = _info(user)
    _admin_audit(actor, "user.create", uname, f"role={role}")
    return info


@service(Permission.USER_MANAGE)
def set_active(actor: Actor, user_id: int, active: bool) -> UserInfo:
    with get_runtime().session() as s:
        user = _get(s, user_id)
        if user.id == actor.user_id and not active:
            raise ValidationError("You cannot disable your own account.")
        user.is_active = bool(active)
        s.add(user)
        info = _info(user)
    _admin_audit(actor, "user.enable" if active else "user.disable", info.username)
    return info


@service(Permission.USER_MANAGE)
def set_role(actor: Actor, user_id: int, role: str) -> UserInfo:
    if role not in ROLES:
        raise ValidationError(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}.")
    with get_runtime().session() as s:
        user = _get(s, user_id)
        if user.id == actor.user_id and role != user.role:
            raise ValidationError("You cannot change your own role: ask another administrator.")
        old = user.role
        user.role = role
        s.add(user)
        info = _info(user)
    _admin_audit(actor, "user.set_role", info.username, f"{old} -> {role}")
    return info


@service(Permission.USER_MANAGE)
def unlock(actor: Actor, user_id: int) -> UserInfo:
    with get_runtime().session() as s:
        user = _get(s, user_id)
        user.failed_attempts, user.locked_until = 0, None
        s.add(user)
        info = _info(user)
    _admin_audit(actor, "user.unlock", info.username)
    return info


@service(Permission.USER_MANAGE)
def reset_password(actor: Actor, user_id: int) -> str:
    """Give the user a fresh one-time password (returned once) that must be changed at login."""
    temp = secrets.token_urlsafe(12)
    with get_runtime().session() as s:
        user = _get(s, user_id)
        user.password_hash = hash_password(temp)
        user.must_change_password = True
        user.failed_attempts, user.locked_until = 0, None
        s.add(user)
        uname = user.username
    _admin_audit(actor, "user.reset_password", uname)
    return temp
