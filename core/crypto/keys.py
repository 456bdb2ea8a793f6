"""Envelope keys: a master key (32 bytes) wraps each image's data key with AES-256-GCM.

The master key comes from MEDSHIELD_MASTER_KEY (base64) or from a key file created on first use
with mode 0600. Each wrapped key records the master key's id (first 16 hex of its SHA-256), so a
rotation can re-wrap every data key without touching ciphertexts, and an interrupted rotation
can resume: the previous key is kept as `master.key.previous` until every row is re-wrapped.
Keys are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import IntegrityError

NONCE_BYTES = 12
KEY_BYTES = 32


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"medshield-master-key-id|" + key).hexdigest()[:16]


def _dek_aad(image_id: int, kid: str) -> bytes:
    return f"medshield/dek/v1|image={image_id}|kek={kid}".encode()


@dataclass(frozen=True)
class MasterKey:
    key: bytes

    @property
    def id(self) -> str:
        return key_id(self.key)

    def __repr__(self) -> str:  # never print key material
        return f"MasterKey(id={self.id})"


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap_data_key(master: MasterKey, image_id: int, dek: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(master.key).encrypt(nonce, dek, _dek_aad(image_id, master.id))


def unwrap_data_key(master: MasterKey, image_id: int, wrapped: bytes) -> bytes:
    if len(wrapped) != NONCE_BYTES + KEY_BYTES + 16:
        raise IntegrityError("The image's wrapped data key is damaged (wrong length).")
    try:
        return AESGCM(master.key).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:],
                                          _dek_aad(image_id, master.id))
    except InvalidTag:
        raise IntegrityError(
            "The image's data key cannot be unwrapped: wrong master key, or the wrapped key or "
            "its image binding was changed.") from None


def _write_key_file(path: Path, key: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(key).decode() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _read_key_file(path: Path) -> bytes:
    try:
        key = base64.b64decode(path.read_text().strip(), validate=True)
    except (ValueError, OSError) as exc:
        raise IntegrityError(f"The master key file {path.name} is unreadable.") from exc
    if len(key) != KEY_BYTES:
        raise IntegrityError(f"The master key file {path.name} does not hold a 256-bit key.")
    return key


class KeyRing:
    """The current master key plus, during a rotation, the previous one."""

    def __init__(self, secrets_dir: Path, env_key_b64: str | None = None):
        self.secrets_dir = Path(secrets_dir)
        self.path = self.secrets_dir / "master.key"
        self.previous_path = self.secrets_dir / "master.key.previous"
        self.from_env = env_key_b64 is not None
        if env_key_b64 is not None:
            try:
                key = base64.b64decode(env_key_b64, validate=True)
            except ValueError as exc:
                raise IntegrityError("MEDSHIELD_MASTER_KEY is not valid base64.") from exc
            if len(key) != KEY_BYTES:
                raise IntegrityError("MEDSHIELD_MASTER_KEY must decode to 32 bytes.")
            self.current = MasterKey(key)
        else:
            if not self.path.exists():
                _write_key_file(self.path, secrets.token_bytes(KEY_BYTES))
            self.current = MasterKey(_read_key_file(self.path))
        self.previous = MasterKey(_read_key_file(self.previous_path)) if self.previous_path.exists() else None

    def by_id(self, kid: str) -> MasterKey:
        for k in (self.current, self.previous):
            if k is not None and k.id == kid:
                return k
        raise IntegrityError("The master key that wrapped this image's data key is not available.")

    def begin_rotation(self) -> MasterKey:
        """Make a fresh current key, keeping the old one as previous until `finish_rotation`."""
        if self.from_env:
            raise IntegrityError("The master key comes from MEDSHIELD_MASTER_KEY: rotate it there "
                                 "(set the new key and keep the old one for the re-wrap).")
        if self.previous is None:
            _write_key_file(self.previous_path, self.current.key)
            self.previous = self.current
            new = secrets.token_bytes(KEY_BYTES)
            _write_key_file(self.path, new)
            self.current = MasterKey(new)
        return self.current

    def finish_rotation(self) -> None:
        if self.previous_path.exists():
            self.previous_path.unlink()
        self.previous = None


def _secret_aad(purpose: str, owner: int, kid: str) -> bytes:
    return f"medshield/secret/v1|{purpose}|owner={owner}|kek={kid}".encode()


def wrap_secret(master: MasterKey, purpose: str, owner: int, secret: bytes) -> bytes:
    """Seal a small secret (a TOTP seed, a PACS password) under the master key, bound to what it is
    for and whose it is: it cannot be moved to another row or purpose."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(master.key).encrypt(nonce, secret, _secret_aad(purpose, owner, master.id))


def unwrap_secret(master: MasterKey, purpose: str, owner: int, wrapped: bytes) -> bytes:
    try:
        return AESGCM(master.key).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:],
                                          _secret_aad(purpose, owner, master.id))
    except (InvalidTag, ValueError):
        raise IntegrityError(f"A stored {purpose} secret cannot be unwrapped: wrong master key, or it was "
                             "changed or moved.") from None
