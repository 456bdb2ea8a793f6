"""Content-addressed blob stores: every blob is kept under its own SHA-256 (ab/cd/<sha256>), written
all-or-nothing, and checked against that checksum on every read.

`open_store(url)` picks the backend from MEDSHIELD_BLOB_URL:
- `file:///path` (or nothing: the data directory's `blobs/`): local files, written to a temporary file,
  fsynced and renamed into place;
- `s3://bucket/prefix`: an S3-compatible object store through boto3 (a single PUT is atomic: a reader
  sees the whole object or none). Endpoint from MEDSHIELD_S3_ENDPOINT or AWS_ENDPOINT_URL, region and
  credentials from the usual AWS variables. Large objects go up and come down in parts.

Callers write the blob first and commit the database row after; a crash between the two leaves an
orphan blob, which `sweep` removes (never a row without its blob).
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from core.errors import IntegrityError, NotFound, ValidationError
from core.hashing import sha256_hex


def _check_key(key: str) -> str:
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise NotFound("Unknown blob key.")
    return key


def _rel(key: str) -> str:
    return f"{key[:2]}/{key[2:4]}/{key}"


class BlobStore:
    """The interface every backend keeps (and the local-file backend)."""

    url = "file://"

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.url = f"file://{self.root}"

    def path_for(self, key: str) -> Path:
        return self.root / _rel(_check_key(key))

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

    def put_many(self, blobs: list[bytes]) -> list[tuple[str, bool]]:
        """`put` of several blobs at once (threads overlap the fsyncs or the object-store round trips);
        results in order. If any write fails, the ones this call newly wrote are deleted and the error
        is raised: all or nothing."""
        if len(blobs) <= 1:
            return [self.put(b) for b in blobs]
        futures = [_writers().submit(self.put, b) for b in blobs]
        done, error = [], None
        for f in futures:
            try:
                done.append(f.result())
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the cleanup
                error = error or exc
        if error is not None:
            for key, new in done:
                if new:
                    self.delete(key)
            raise error
        return done

    def put_many_async(self, blobs: list[bytes]):
        """`put_many` in the background: a Future of its result (or of its error, after its cleanup)."""
        return _batches().submit(self.put_many, blobs)

    def get(self, key: str, *, verify: bool = True) -> bytes:
        path = self.path_for(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound("The stored file is missing from the blob store.") from None
        return _verified(key, data, verify)

    def delete(self, key: str) -> None:
        try:
            self.path_for(key).unlink()
        except FileNotFoundError:
            pass

    def keys(self) -> Iterator[str]:
        for key, _ in self.stat_keys():
            yield key

    def stat_keys(self) -> Iterator[tuple[str, float]]:
        """(key, last-modified time as a Unix timestamp) of every blob."""
        for p in self.root.rglob("*"):
            if p.is_file() and len(p.name) == 64 and not p.name.startswith("."):
                yield p.name, p.stat().st_mtime

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())


FileBlobStore = BlobStore

_WRITERS = None
_WRITERS_LOCK = threading.Lock()


def _writers():
    """One pool of writer threads per process for `put_many` (fsyncs and object-store round trips
    overlap; the threads wait on I/O, not on the CPU)."""
    global _WRITERS
    with _WRITERS_LOCK:
        if _WRITERS is None:
            from concurrent.futures import ThreadPoolExecutor

            _WRITERS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="blob-put")
        return _WRITERS


_BATCHES = None


def _batches():
    """A separate small pool for `put_many_async` (a batch waiting on its writes must not hold one of
    the writer threads it waits for)."""
    global _BATCHES
    with _WRITERS_LOCK:
        if _BATCHES is None:
            from concurrent.futures import ThreadPoolExecutor

            _BATCHES = ThreadPoolExecutor(max_workers=4, thread_name_prefix="blob-batch")
        return _BATCHES


def _forget_writers() -> None:  # a forked child has the pool objects but not their threads
    global _WRITERS, _BATCHES, _WRITERS_LOCK
    _WRITERS, _BATCHES, _WRITERS_LOCK = None, None, threading.Lock()


os.register_at_fork(after_in_child=_forget_writers)


def _verified(key: str, data: bytes, verify: bool) -> bytes:
    if verify and sha256_hex(data) != key:
        raise IntegrityError("A stored file does not match its checksum: it was altered in the blob store.")
    return data


class S3BlobStore(BlobStore):
    """Blobs in an S3-compatible bucket (AWS, SeaweedFS, MinIO, Ceph...)."""

    PART = 16 * 1024 * 1024  # objects above this go up and come down in parts

    def __init__(self, bucket: str, prefix: str = "", client=None, endpoint: str | None = None):
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.endpoint = endpoint or os.environ.get("MEDSHIELD_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
        self.client = client or boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            config=Config(retries={"max_attempts": 8, "mode": "standard"}, connect_timeout=5, read_timeout=60,
                          s3={"addressing_style": "path"}))
        self.url = f"s3://{bucket}/{self.prefix}" + (f" at {self.endpoint}" if self.endpoint else "")

    def _k(self, key: str) -> str:
        rel = _rel(_check_key(key))
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def path_for(self, key: str) -> Path:  # pragma: no cover - there is no local path
        raise ValidationError("Blobs in an object store have no local path.")

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._k(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def put(self, data: bytes) -> tuple[str, bool]:
        key = sha256_hex(data)
        if self.exists(key):
            return key, False
        if len(data) > self.PART:
            from boto3.s3.transfer import TransferConfig

            self.client.upload_fileobj(io.BytesIO(data), self.bucket, self._k(key),
                                       Config=TransferConfig(multipart_threshold=self.PART, multipart_chunksize=self.PART))
        else:
            self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data)
        return key, True

    def get(self, key: str, *, verify: bool = True) -> bytes:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._k(key))["Body"]
            buf = io.BytesIO()
            for chunk in iter(lambda: body.read(1 << 20), b""):
                buf.write(chunk)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise NotFound("The stored file is missing from the blob store.") from None
            raise
        return _verified(key, buf.getvalue(), verify)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._k(key))

    def _objects(self):
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else "")
        for page in pages:
            yield from page.get("Contents", []) or []

    def stat_keys(self) -> Iterator[tuple[str, float]]:
        for obj in self._objects():
            name = obj["Key"].rsplit("/", 1)[-1]
            if len(name) == 64:
                yield name, obj["LastModified"].timestamp()

    def size_bytes(self) -> int:
        return sum(int(o.get("Size", 0)) for o in self._objects())


def open_store(url: str | None, default_dir: Path) -> BlobStore:
    """The blob store a MEDSHIELD_BLOB_URL names (None or empty: local files under `default_dir`)."""
    if not url:
        return BlobStore(default_dir)
    u = urlparse(url)
    if u.scheme == "file":
        return BlobStore(Path(u.path or default_dir))
    if u.scheme == "s3":
        if not u.netloc:
            raise ValidationError("MEDSHIELD_BLOB_URL s3://bucket/prefix needs a bucket.")
        return S3BlobStore(u.netloc, u.path)
    raise ValidationError(f"MEDSHIELD_BLOB_URL must start with file:// or s3://, not {u.scheme or url!r}.")


def copy_all(src: BlobStore, dst: BlobStore, progress=None) -> tuple[int, int]:
    """Copy every blob of `src` to `dst` and verify each copy by reading it back against its key.
    Returns (copied, already there). Safe to run again after an interruption."""
    keys = list(src.keys())
    copied = present = 0
    for n, key in enumerate(keys, start=1):
        if dst.exists(key):
            dst.get(key)  # verified: a damaged copy raises IntegrityError
            present += 1
        else:
            data = src.get(key)
            got, _ = dst.put(data)
            if got != key or dst.get(key) != data:
                raise IntegrityError(f"The copy of blob {key[:12]}… does not match.")
            copied += 1
        if progress:
            progress(n, len(keys))
    return copied, present
