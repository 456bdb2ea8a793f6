"""SQLModel tables. Later capabilities add columns here (and an Alembic revision), not tables
that duplicate these."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import JSON, BigInteger, Column, DateTime, LargeBinary, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_type=DateTime(timezone=True), **kw)


def _opt_ts(**kw: Any) -> Any:
    return Field(default=None, sa_type=DateTime(timezone=True), **kw)


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: Optional[int] = Field(default=None, primary_key=True)
    username: str = Field(index=True, unique=True, max_length=64)
    name: str = Field(max_length=128)
    email: str = Field(default="", max_length=254)
    role: str = Field(max_length=16, index=True)
    password_hash: str = Field(max_length=128)
    is_active: bool = Field(default=True)
    failed_attempts: int = Field(default=0)
    locked_until: Optional[datetime] = _opt_ts()
    must_change_password: bool = Field(default=False)
    created_at: datetime = _ts()
    last_login_at: Optional[datetime] = _opt_ts()
    # TOTP second factor (RFC 6238): the secret wrapped by the master key (never stored in clear); it is in
    # force once confirmed by a first code; the last accepted time step refuses a replayed code
    totp_wrapped: Optional[bytes] = Field(default=None, sa_type=LargeBinary)
    totp_key_id: Optional[str] = Field(default=None, max_length=16)
    totp_enabled: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    totp_last_step: Optional[int] = Field(default=None, sa_type=BigInteger)
    totp_enabled_at: Optional[datetime] = _opt_ts()


class RecoveryCode(SQLModel, table=True):
    """One-time recovery codes for the second factor, stored as bcrypt hashes; shown once."""

    __tablename__ = "recovery_codes"

    id: Optional[int] = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    code_hash: str = Field(max_length=128)
    used_at: Optional[datetime] = _opt_ts()
    created_at: datetime = _ts()


class Patient(SQLModel, table=True):
    __tablename__ = "patients"

    id: Optional[int] = Field(default=None, primary_key=True)
    patient_code: str = Field(index=True, unique=True, max_length=64)  # hospital id / MRN
    name: str = Field(default="", max_length=128)
    age: Optional[int] = Field(default=None)
    sex: str = Field(default="", max_length=8)  # M, F, O or empty
    notes: str = Field(default="", sa_type=Text)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    created_by: Optional[int] = Field(default=None, foreign_key="users.id")


class UploadBatch(SQLModel, table=True):
    __tablename__ = "upload_batches"

    id: Optional[int] = Field(default=None, primary_key=True)
    uploaded_by: Optional[int] = Field(default=None, foreign_key="users.id")
    created_at: datetime = _ts()
    file_count: int = Field(default=0)
    accepted: int = Field(default=0)
    duplicates: int = Field(default=0)
    rejected: int = Field(default=0)


class Image(SQLModel, table=True):
    __tablename__ = "images"

    id: Optional[int] = Field(default=None, primary_key=True)
    sha256: str = Field(index=True, unique=True, max_length=64)  # checksum of the uploaded bytes
    blob_key: str = Field(max_length=128)
    thumb_key: Optional[str] = Field(default=None, max_length=128)  # PNG preview, 256 px
    patient_id: Optional[int] = Field(default=None, foreign_key="patients.id", index=True)
    batch_id: Optional[int] = Field(default=None, foreign_key="upload_batches.id", index=True)
    source_name: str = Field(default="", max_length=255)  # name inside the upload (may hold PHI: never logged)
    source_format: str = Field(max_length=16)  # png, jpeg, dicom
    modality: str = Field(default="OT", max_length=16, index=True)
    rows: int
    cols: int
    frames: int = Field(default=1)
    channels: int = Field(default=1)
    bit_depth: int = Field(default=8)
    size_bytes: int
    status: str = Field(default="uploaded", max_length=16, index=True)
    label: Optional[str] = Field(default=None, max_length=64)  # class from a labelled dataset
    split: Optional[str] = Field(default=None, max_length=8)  # train / val / test
    project_id: Optional[int] = Field(default=None, foreign_key="projects.id", index=True)
    study_date: Optional[str] = Field(default=None, max_length=8)  # DICOM YYYYMMDD, for search
    uploaded_by: Optional[int] = Field(default=None, foreign_key="users.id")
    uploaded_at: datetime = _ts(index=True)
    # Protect / restore (the original exists only as the protected image plus sealed regions)
    pixel_sha256: Optional[str] = Field(default=None, max_length=64)  # decoded pixels at upload
    protected_format: Optional[str] = Field(default=None, max_length=16)  # png or dicom
    dek_wrapped: Optional[bytes] = Field(default=None, sa_type=LargeBinary)
    dek_key_id: Optional[str] = Field(default=None, max_length=16, index=True)
    header_sealed: Optional[bytes] = Field(default=None, sa_type=LargeBinary)  # original DICOM header
    mask_mode: Optional[str] = Field(default=None, max_length=16)
    deid_method: Optional[str] = Field(default=None, max_length=255)
    protected_by: Optional[int] = Field(default=None, foreign_key="users.id")
    protected_at: Optional[datetime] = _opt_ts()
    protect_metrics: Optional[dict] = Field(default=None, sa_column=Column(JSON))


class Project(SQLModel, table=True):
    """A labelling project: a task type, a class list, and the model task its versions serve."""

    __tablename__ = "projects"

    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=64)
    task_type: str = Field(max_length=16)  # classification, detection, segmentation
    classes: list = Field(default_factory=list, sa_column=Column(JSON))
    model_task: str = Field(max_length=32)  # e.g. classifier-cxr, segmenter-lung, detector
    description: str = Field(default="", sa_type=Text)
    created_by: Optional[int] = Field(default=None, foreign_key="users.id")
    created_at: datetime = _ts()


class Region(SQLModel, table=True):
    """A sensitive region found by the detector, the DICOM header match, or a person."""

    __tablename__ = "regions"
    __table_args__ = (UniqueConstraint("image_id", "index"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="images.id", index=True)
    index: int
    frame: int = Field(default=0)
    x0: int
    y0: int
    x1: int
    y1: int
    kind: str = Field(max_length=32)  # phi, name, id, date, other-phi, annotation
    confidence: float = Field(default=1.0)
    source: str = Field(default="detector", max_length=16)
    # why it is sealed: header:<Keyword> (a value of the file's own header), rule:<kind>, default (not
    # positively technical), detector (seen but unreadable), manual; never the text itself (PHI)
    reason: str = Field(default="", max_length=64, sa_column_kwargs={"server_default": ""})
    seen_by: str = Field(default="", max_length=32, sa_column_kwargs={"server_default": ""})  # "ocr,yolo"
    dtype: str = Field(default="", max_length=16)
    shape: str = Field(default="", max_length=32, sa_column_kwargs={"server_default": ""})  # "40x120[x3]"
    nonce: Optional[bytes] = Field(default=None, sa_type=LargeBinary)
    ciphertext: Optional[bytes] = Field(default=None, sa_type=LargeBinary)  # includes the GCM tag
    sealed_at: Optional[datetime] = _opt_ts()


class Annotation(SQLModel, table=True):
    __tablename__ = "annotations"

    id: Optional[int] = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="images.id", index=True)
    author_id: Optional[int] = Field(default=None, foreign_key="users.id")
    kind: str = Field(max_length=16)  # rect, polygon, mask, label
    label: str = Field(max_length=64)
    geometry: dict = Field(default_factory=dict, sa_column=Column(JSON))
    status: str = Field(default="pending", max_length=16)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class ModelVersion(SQLModel, table=True):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("task", "version"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    task: str = Field(max_length=32, index=True)  # detector, classifier-cxr, segmenter-lung...
    name: str = Field(max_length=64)
    version: str = Field(max_length=32)
    path: str = Field(max_length=255)
    sha256: str = Field(max_length=64)
    metrics: dict = Field(default_factory=dict, sa_column=Column(JSON))
    params: dict = Field(default_factory=dict, sa_column=Column(JSON))
    deployed: bool = Field(default=False)
    created_by: Optional[int] = Field(default=None, foreign_key="users.id")
    created_at: datetime = _ts()


class AIResult(SQLModel, table=True):
    __tablename__ = "ai_results"

    id: Optional[int] = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="images.id", index=True)
    model_version_id: Optional[int] = Field(default=None, foreign_key="model_versions.id")
    task: str = Field(max_length=32)
    input_sha256: str = Field(default="", max_length=64)
    prediction: str = Field(default="", max_length=64)
    probabilities: dict = Field(default_factory=dict, sa_column=Column(JSON))
    uncertainty: Optional[float] = Field(default=None)
    triage: str = Field(default="", max_length=16)
    settings: dict = Field(default_factory=dict, sa_column=Column(JSON))
    review_status: str = Field(default="pending", max_length=16, index=True)
    reviewer_id: Optional[int] = Field(default=None, foreign_key="users.id")
    review_comment: str = Field(default="", sa_type=Text)
    corrected_label: Optional[str] = Field(default=None, max_length=64)
    created_at: datetime = _ts()
    reviewed_at: Optional[datetime] = _opt_ts()


class Job(SQLModel, table=True):
    __tablename__ = "jobs"

    id: Optional[int] = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32, index=True)
    status: str = Field(default="queued", max_length=16, index=True)
    progress: float = Field(default=0.0)
    message: str = Field(default="", sa_type=Text)
    params: dict = Field(default_factory=dict, sa_column=Column(JSON))
    result: dict = Field(default_factory=dict, sa_column=Column(JSON))
    created_by: Optional[int] = Field(default=None, foreign_key="users.id")
    created_at: datetime = _ts()
    started_at: Optional[datetime] = _opt_ts()
    finished_at: Optional[datetime] = _opt_ts()


class Worker(SQLModel, table=True):
    """A queue worker process: it heartbeats here, so any app replica sees it alive, busy or gone."""

    __tablename__ = "workers"

    name: str = Field(primary_key=True, max_length=96)  # host:pid:random
    host: str = Field(default="", max_length=64)
    pid: int = Field(default=0)
    backend: str = Field(default="", max_length=16)
    threads: int = Field(default=1)
    started_at: datetime = _ts()
    heartbeat_at: datetime = _ts(index=True)
    stopped_at: Optional[datetime] = _opt_ts()
    current_task: str = Field(default="", max_length=32)
    current_job_id: Optional[int] = Field(default=None)
    tasks_done: int = Field(default=0)
    tasks_failed: int = Field(default=0)


class AuditEvent(SQLModel, table=True):
    """Append-only, hash-chained. Never holds pixel data or PHI values."""

    __tablename__ = "audit_events"

    id: Optional[int] = Field(default=None, primary_key=True)
    seq: int = Field(index=True, unique=True)
    ts: datetime = _ts(index=True)
    username: str = Field(default="", max_length=64, index=True)
    role: str = Field(default="", max_length=16)
    action: str = Field(max_length=48, index=True)
    object_type: str = Field(default="", max_length=32)
    object_id: str = Field(default="", max_length=64)
    outcome: str = Field(max_length=16)  # success, failure, denied
    detail: str = Field(default="", sa_type=Text)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class Setting(SQLModel, table=True):
    """Admin-editable settings (thresholds, policies) stored as JSON values."""

    __tablename__ = "settings"

    key: str = Field(primary_key=True, max_length=64)
    value: Any = Field(default=None, sa_column=Column(JSON))
    updated_at: datetime = _ts()
    updated_by: Optional[int] = Field(default=None, foreign_key="users.id")


class PacsNode(SQLModel, table=True):
    """A PACS the product talks to: DICOMweb (URL, optional basic/bearer auth) or DIMSE (AE title, host,
    port). The password or token is wrapped by the master key, never stored or logged in clear."""

    __tablename__ = "pacs_nodes"

    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=64)
    kind: str = Field(max_length=16)  # dicomweb | dimse
    url: str = Field(default="", max_length=512)
    auth: str = Field(default="none", max_length=16)  # none | basic | bearer
    username: str = Field(default="", max_length=128)
    secret_wrapped: Optional[bytes] = Field(default=None, sa_type=LargeBinary)
    secret_key_id: Optional[str] = Field(default=None, max_length=16)
    ae_title: str = Field(default="", max_length=16)
    host: str = Field(default="", max_length=255)
    port: int = Field(default=0)
    calling_ae: str = Field(default="MEDSHIELD", max_length=16)
    timeout_s: float = Field(default=15.0)
    verify_tls: bool = Field(default=True)
    from_env: bool = Field(default=False)  # made from MEDSHIELD_PACS_URL (kept in step with it)
    created_by: Optional[int] = Field(default=None, foreign_key="users.id")
    created_at: datetime = _ts()
    last_test_at: Optional[datetime] = _opt_ts()
    last_test_ok: Optional[bool] = Field(default=None)
    last_test_message: str = Field(default="", max_length=255)


class PacsInstance(SQLModel, table=True):
    """Per-instance state of pulls: an instance pulled once is never pulled twice (a dropped connection
    resumes where it stopped; a second pull of the same series only fetches what is new)."""

    __tablename__ = "pacs_instances"
    __table_args__ = (UniqueConstraint("node_id", "sop_uid"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    node_id: int = Field(foreign_key="pacs_nodes.id", index=True)
    sop_uid: str = Field(max_length=64)
    series_uid: str = Field(max_length=64, index=True)
    study_uid: str = Field(max_length=64)
    status: str = Field(max_length=16)  # accepted | duplicate | rejected | missing
    reason: str = Field(default="", max_length=255)
    image_id: Optional[int] = Field(default=None, foreign_key="images.id")
    job_id: Optional[int] = Field(default=None, foreign_key="jobs.id")
    created_at: datetime = _ts()
