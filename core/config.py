"""Settings from the environment (and an optional `.env` file).

Every knob has an embedded default so the app runs with nothing configured: a SQLite file and a
local blob store under the data directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:  # a clear message instead of a traceback deep in a service
        raise ValueError(f"Environment variable {name} must be an integer, got {raw!r}") from exc


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"Environment variable {name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class Limits:
    """Input limits applied before anything is decoded or stored."""

    max_file_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 60_000_000  # per frame; 100k x 100k headers are refused before decoding
    max_total_pixels: int = 400_000_000  # all frames of one file together
    max_zip_entries: int = 2_000
    max_zip_total_bytes: int = 1024 * 1024 * 1024
    max_zip_ratio: float = 100.0
    max_zip_depth: int = 4  # class folders: split/class/file, or patient/split/class/file


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    redis_url: str | None
    limits: Limits = field(default_factory=Limits)
    blob_url: str | None = None  # file:///path or s3://bucket/prefix; None: blob_dir
    pacs_url: str | None = None  # dicomweb+https://user:pass@host/dicom-web or dimse://AET@host:port
    lockout_attempts: int = 5
    lockout_minutes: int = 15
    idle_timeout_minutes: int = 30
    cookie_expiry_days: float = 0.5
    admin_username: str = "admin"
    admin_password: str | None = None
    master_key_b64: str | None = None
    detector_conf: float = 0.25
    detector_iou: float = 0.45
    bcrypt_rounds: int = 12

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def with_overrides(self, **changes) -> "Settings":
        return replace(self, **changes)


def load_settings(env_file: str | os.PathLike | None = None) -> Settings:
    """Read settings from the environment; `.env` in the project root is read if present."""
    load_dotenv(env_file or PROJECT_ROOT / ".env", override=False)
    data_dir = Path(os.environ.get("MEDSHIELD_DATA_DIR") or PROJECT_ROOT / "data").resolve()
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{data_dir / 'medshield.db'}"
    if database_url.startswith("postgres://"):
        database_url = "postgresql://" + database_url[len("postgres://"):]
    limits = Limits(
        max_file_bytes=_int("MEDSHIELD_MAX_FILE_MB", 50) * 1024 * 1024,
        max_pixels=_int("MEDSHIELD_MAX_PIXELS", Limits.max_pixels),
        max_total_pixels=_int("MEDSHIELD_MAX_TOTAL_PIXELS", Limits.max_total_pixels),
        max_zip_entries=_int("MEDSHIELD_MAX_ZIP_ENTRIES", Limits.max_zip_entries),
        max_zip_total_bytes=_int("MEDSHIELD_MAX_ZIP_TOTAL_MB", 1024) * 1024 * 1024,
        max_zip_ratio=_float("MEDSHIELD_MAX_ZIP_RATIO", Limits.max_zip_ratio),
    )
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        redis_url=os.environ.get("REDIS_URL") or None,
        limits=limits,
        blob_url=os.environ.get("MEDSHIELD_BLOB_URL") or None,
        pacs_url=os.environ.get("MEDSHIELD_PACS_URL") or None,
        lockout_attempts=_int("MEDSHIELD_LOCKOUT_ATTEMPTS", 5),
        lockout_minutes=_int("MEDSHIELD_LOCKOUT_MINUTES", 15),
        idle_timeout_minutes=_int("MEDSHIELD_IDLE_TIMEOUT_MINUTES", 30),
        cookie_expiry_days=_float("MEDSHIELD_COOKIE_EXPIRY_DAYS", 0.5),
        admin_username=os.environ.get("MEDSHIELD_ADMIN_USER") or "admin",
        admin_password=os.environ.get("MEDSHIELD_ADMIN_PASSWORD") or None,
        master_key_b64=os.environ.get("MEDSHIELD_MASTER_KEY") or None,
        detector_conf=_float("MEDSHIELD_DETECTOR_CONF", 0.25),
        detector_iou=_float("MEDSHIELD_DETECTOR_IOU", 0.45),
        bcrypt_rounds=max(4, min(_int("MEDSHIELD_BCRYPT_ROUNDS", 12), 16)),
    )
