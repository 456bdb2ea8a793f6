"""Secret material kept under the data directory with mode 0600 (never logged)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def read_or_create_secret(path: Path, nbytes: int = 48) -> str:
    """Return the secret in `path`, creating it (urlsafe text, mode 0600) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(nbytes))
    return path.read_text().strip()


def cookie_key(secrets_dir: Path) -> str:
    """The login-cookie signing key: MEDSHIELD_COOKIE_KEY, or a generated file (>= 32 bytes)."""
    env = os.environ.get("MEDSHIELD_COOKIE_KEY")
    if env:
        if len(env.encode()) < 32:
            raise ValueError("MEDSHIELD_COOKIE_KEY must be at least 32 bytes long.")
        return env
    return read_or_create_secret(secrets_dir / "cookie.key")


def deid_key(secrets_dir: Path) -> str:
    """The key of UID remapping and pseudonyms: MEDSHIELD_DEID_KEY (shared by every replica of a cluster,
    so the same study gets the same new UIDs whichever machine protects it), or a generated file."""
    env = os.environ.get("MEDSHIELD_DEID_KEY")
    if env:
        if len(env.encode()) < 32:
            raise ValueError("MEDSHIELD_DEID_KEY must be at least 32 bytes long.")
        return env
    return read_or_create_secret(secrets_dir / "deid.key")
