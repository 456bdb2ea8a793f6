"""Content-addressed local blob store: blobs/ab/cd/<sha256>, written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from core.errors import IntegrityError, NotFound
from core.hashing import sha256_hex


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o750)

    def path_for(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise NotFound("Unknown blob key.")
        return self.root / key[:2] / key[2:4] / key

    def exists(self, key: str) -> bool:
        return self.path_for(key).exists()

    def put(self, data: bytes) -> tuple[str, bool]:
        """Store bytes under their SHA-256. Returns (key, newly_written)."""
        key = sha256_hex(data)
        path = self.path_for(key)
        if path.exists():
            return key, False
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o640)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return key, True

    def get(self, key: str, *, verify: bool = True) -> bytes:
        path = self.path_for(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound("The stored file is missing from the blob store.") from None
        if verify and sha256_hex(data) != key:
            raise IntegrityError("A stored file does not match its checksum: it was altered on disk.")
        return data

    def delete(self, key: str) -> None:
        try:
            self.path_for(key).unlink()
        except FileNotFoundError:
            pass
