"""Password hashing (bcrypt): the cost comes from the settings; a password is 8 to 72 bytes. Low in the
layers: the runtime's first-admin bootstrap and the account services both use it."""

from __future__ import annotations

import bcrypt

from core.errors import ValidationError

MIN_PASSWORD = 8
_dummy_hash: str | None = None


def hash_password(password: str, rounds: int) -> str:
    check_password_shape(password)
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()


def dummy_hash(rounds: int) -> str:
    """A hash to check against for unknown users, so they take as long as real ones."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = bcrypt.hashpw(b"timing-equaliser", bcrypt.gensalt(rounds=rounds)).decode()
    return _dummy_hash


def check_password_shape(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ValidationError(f"A password needs at least {MIN_PASSWORD} characters.")
    if len(password.encode()) > 72:
        raise ValidationError("A password can be at most 72 bytes long.")


def verify(password: str, hashed: str) -> bool:
    raw = password.encode()
    if len(raw) > 72:
        return False
    try:
        return bcrypt.checkpw(raw, hashed.encode())
    except ValueError:
        return False
