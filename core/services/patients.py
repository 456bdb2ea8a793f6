"""Patients and their images: create, edit, search and filter, thumbnails."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timezone

from sqlalchemy import func, or_
from sqlmodel import select

from core import audit
from core.db.models import Image, Patient, utcnow
from core.errors import Conflict, NotFound, ValidationError
from core.runtime import get_runtime
from core.security import Actor, Permission, service
from core.timeutil import as_utc

SEXES = ("", "M", "F", "O")


@dataclass(frozen=True)
class PatientInfo:
    id: int
    patient_code: str
    name: str
    age: int | None
    sex: str
    notes: str
    created_at: datetime
    image_count: int = 0
    modalities: tuple[str, ...] = ()
    last_upload: datetime | None = None


@dataclass(frozen=True)
class ImageInfo:
    id: int
    patient_id: int | None
    source_name: str
    source_format: str
    modality: str
    rows: int
    cols: int
    frames: int
    bit_depth: int
    size_bytes: int
    status: str
    label: str | None
    split: str | None
    sha256: str
    uploaded_at: datetime
    uploaded_by: int | None
    project_id: int | None = None


def _image_info(i: Image) -> ImageInfo:
    return ImageInfo(i.id, i.patient_id, i.source_name, i.source_format, i.modality, i.rows,  # type: ignore[arg-type]
                     i.cols, i.frames, i.bit_depth, i.size_bytes, i.status, i.label, i.split,
                     i.sha256, as_utc(i.uploaded_at), i.uploaded_by, i.project_id)  # type: ignore[arg-type]


def _validate(patient_code: str, name: str, age: int | None, sex: str) -> tuple[str, str, int | None, str]:
    code = (patient_code or "").strip()
    if not code:
        raise ValidationError("A patient id is required.")
    if len(code) > 64:
        raise ValidationError("A patient id has at most 64 characters.")
    if age is not None and not (0 <= int(age) <= 130):
        raise ValidationError("Age must be between 0 and 130.")
    sex = (sex or "").strip().upper()[:1]
    if sex not in SEXES:
        raise ValidationError("Sex must be M, F, O or empty.")
    return code, (name or "").strip()[:128], (int(age) if age is not None else None), sex


@service(Permission.PATIENT_WRITE)
def create_patient(actor: Actor, patient_code: str, name: str = "", age: int | None = None,
                   sex: str = "", notes: str = "") -> PatientInfo:
    code, name, age, sex = _validate(patient_code, name, age, sex)
    rt = get_runtime()
    with rt.session() as s:
        if s.exec(select(Patient).where(Patient.patient_code == code)).first():
            raise Conflict("A patient with this id already exists.")
        p = Patient(patient_code=code, name=name, age=age, sex=sex, notes=(notes or "")[:5000],
                    created_by=actor.user_id)
        s.add(p)
        s.flush()
        pid = p.id
    audit.record(rt.engine, actor.username, actor.role, "patient.create", "success",
                 object_type="patient", object_id=pid)
    return _patient_info(pid)


@service(Permission.PATIENT_WRITE)
def update_patient(actor: Actor, patient_id: int, patient_code: str, name: str = "",
                   age: int | None = None, sex: str = "", notes: str = "") -> PatientInfo:
    code, name, age, sex = _validate(patient_code, name, age, sex)
    rt = get_runtime()
    with rt.session() as s:
        p = s.get(Patient, patient_id)
        if p is None:
            raise NotFound(f"No patient with id {patient_id}.")
        clash = s.exec(select(Patient).where(Patient.patient_code == code, Patient.id != patient_id)).first()
        if clash:
            raise Conflict("Another patient already has this id.")
        changed = [f for f, v in (("patient_code", code), ("name", name), ("age", age), ("sex", sex),
                                  ("notes", (notes or "")[:5000])) if getattr(p, f) != v]
        p.patient_code, p.name, p.age, p.sex, p.notes = code, name, age, sex, (notes or "")[:5000]
        p.updated_at = utcnow()
        s.add(p)
    audit.record(rt.engine, actor.username, actor.role, "patient.update", "success",
                 object_type="patient", object_id=patient_id, detail="fields=" + ",".join(changed))
    return _patient_info(patient_id)


@service(Permission.PATIENT_READ)
def get_patient(actor: Actor, patient_id: int) -> PatientInfo:
    return _patient_info(patient_id)


def _patient_info(patient_id: int) -> PatientInfo:
    with get_runtime().session() as s:
        p = s.get(Patient, patient_id)
        if p is None:
            raise NotFound(f"No patient with id {patient_id}.")
        imgs = s.exec(select(Image).where(Image.patient_id == patient_id)).all()
        return PatientInfo(p.id, p.patient_code, p.name, p.age, p.sex, p.notes, as_utc(p.created_at),  # type: ignore[arg-type]
                           len(imgs), tuple(sorted({i.modality for i in imgs})),
                           max((as_utc(i.uploaded_at) for i in imgs), default=None))


@service(Permission.PATIENT_READ)
def search_patients(actor: Actor, query: str = "", modality: str | None = None,
                    date_from: date | None = None, date_to: date | None = None,
                    status: str | None = None, limit: int = 200) -> list[PatientInfo]:
    """Match id or name (case-insensitive substring); filter by images' modality, upload date and
    status. Newest activity first."""
    rt = get_runtime()
    with rt.session() as s:
        stmt = select(Patient)
        q = (query or "").strip()
        if q:
            like = f"%{q.lower()}%"
            stmt = stmt.where(or_(func.lower(Patient.patient_code).like(like),
                                  func.lower(Patient.name).like(like)))
        if modality or date_from or date_to or status:
            sub = select(Image.patient_id).where(Image.patient_id.is_not(None))  # type: ignore[union-attr]
            if modality:
                sub = sub.where(Image.modality == modality)
            if status:
                sub = sub.where(Image.status == status)
            if date_from:
                sub = sub.where(Image.uploaded_at >= datetime.combine(date_from, time.min, timezone.utc))
            if date_to:
                sub = sub.where(Image.uploaded_at <= datetime.combine(date_to, time.max, timezone.utc))
            stmt = stmt.where(Patient.id.in_(sub))  # type: ignore[union-attr]
        patients = s.exec(stmt.order_by(Patient.updated_at.desc()).limit(max(1, min(limit, 1000)))).all()  # type: ignore[attr-defined]
        ids = [p.id for p in patients]
        stats: dict[int, list[Image]] = {i: [] for i in ids}
        if ids:
            for img in s.exec(select(Image).where(Image.patient_id.in_(ids))).all():  # type: ignore[union-attr]
                stats[img.patient_id].append(img)  # type: ignore[index]
        out = [PatientInfo(p.id, p.patient_code, p.name, p.age, p.sex, p.notes, as_utc(p.created_at),  # type: ignore[arg-type]
                           len(stats[p.id]), tuple(sorted({i.modality for i in stats[p.id]})),  # type: ignore[index]
                           max((as_utc(i.uploaded_at) for i in stats[p.id]), default=None))  # type: ignore[index]
               for p in patients]
    audit.record(rt.engine, actor.username, actor.role, "patient.search", "success",
                 object_type="patient", detail=f"results={len(out)}")
    return out


@service(Permission.IMAGE_VIEW)
def patient_images(actor: Actor, patient_id: int) -> list[ImageInfo]:
    rt = get_runtime()
    with rt.session() as s:
        if s.get(Patient, patient_id) is None:
            raise NotFound(f"No patient with id {patient_id}.")
        rows = s.exec(select(Image).where(Image.patient_id == patient_id).order_by(Image.uploaded_at.desc())).all()  # type: ignore[attr-defined]
        out = [_image_info(i) for i in rows]
    audit.record(rt.engine, actor.username, actor.role, "patient.view_images", "success",
                 object_type="patient", object_id=patient_id, detail=f"images={len(out)}")
    return out


@service(Permission.IMAGE_VIEW)
def recent_images(actor: Actor, mine_only: bool = True, limit: int = 50) -> list[ImageInfo]:
    """Latest uploads (the acting user's own by default), for the Upload page's history."""
    with get_runtime().session() as s:
        stmt = select(Image)
        if mine_only:
            stmt = stmt.where(Image.uploaded_by == actor.user_id)
        rows = s.exec(stmt.order_by(Image.id.desc()).limit(max(1, min(limit, 500)))).all()  # type: ignore[union-attr]
        return [_image_info(i) for i in rows]


@service(Permission.IMAGE_VIEW)
def list_images(actor: Actor, status: str | None = None, patient_id: int | None = None,
                limit: int = 200) -> list[ImageInfo]:
    """Images by status (uploaded, protected...) and patient, newest first."""
    with get_runtime().session() as s:
        stmt = select(Image)
        if status:
            stmt = stmt.where(Image.status == status)
        if patient_id is not None:
            stmt = stmt.where(Image.patient_id == patient_id)
        rows = s.exec(stmt.order_by(Image.id.desc()).limit(max(1, min(limit, 2000)))).all()  # type: ignore[union-attr]
        return [_image_info(i) for i in rows]


@service(Permission.IMAGE_VIEW)
def image_thumbnail(actor: Actor, image_id: int) -> bytes:
    """PNG preview (256 px) made at upload."""
    rt = get_runtime()
    with rt.session() as s:
        img = s.get(Image, image_id)
        if img is None:
            raise NotFound(f"No image with id {image_id}.")
        key = img.thumb_key
    if not key:
        raise NotFound("This image has no preview.")
    return rt.store.get(key)
