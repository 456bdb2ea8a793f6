"""Upload: PNG, JPEG, DICOM, zips of those, and labelled datasets in class folders.

Each file is size-checked, type-sniffed from content, decoded under limits, checksummed (SHA-256)
and stored content-addressed; a database row records patient, modality, size and checksum.
Rejections store nothing. Every accepted and rejected file is audited (without PHI).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlmodel import select

from core import audit
from core.db.models import Image, Patient, UploadBatch
from core.errors import InvalidImage, MedShieldError, NotFound, ValidationError
from core.imaging.archive import read_archive
from core.imaging.decode import DecodedImage, decode_image, pixel_digest
from core.imaging.display import thumbnail_png
from core.imaging.sniff import sniff_format
from core.runtime import Runtime, get_runtime
from core.security import Actor, Permission, service
from core.storage import sha256_hex

MODALITIES = ("OT", "CR", "DX", "CT", "MR", "US", "MG", "NM", "PT", "XA", "RF", "ES", "OP", "SM")

ProgressFn = Callable[[int, int, str], None]


@dataclass
class FileResult:
    name: str
    status: str  # accepted, duplicate, rejected
    reason: str = ""
    image_id: int | None = None
    modality: str = ""
    label: str | None = None
    split: str | None = None


@dataclass
class IngestReport:
    batch_id: int | None
    results: list[FileResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def accepted(self) -> int:
        return self.count("accepted")

    @property
    def duplicates(self) -> int:
        return self.count("duplicate")

    @property
    def rejected(self) -> int:
        return self.count("rejected")


@dataclass
class _Item:
    name: str
    data: bytes
    label: str | None = None
    split: str | None = None
    patient_code: str | None = None


def _expand(name: str, data: bytes, rt: Runtime) -> list[_Item]:
    return expand_upload(name, data, rt.settings.limits)


def expand_upload(name: str, data: bytes, limits) -> list[_Item]:
    """A file becomes one item, a zip its members (checked: entries, sizes, ratio, traversal, symlinks,
    nesting); raises InvalidImage for a refused upload. Nothing is stored."""
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidImage("Expected file contents as bytes.")
    if len(data) == 0:
        raise InvalidImage("The file is empty.")
    if len(data) > limits.max_file_bytes:
        raise InvalidImage(f"The file is {len(data) / 2**20:.1f} MB, above the "
                           f"{limits.max_file_bytes / 2**20:.0f} MB limit.")
    if sniff_format(bytes(data[:264])) == "zip":
        return [_Item(f"{name}/{m.path}", m.data, m.label, m.split, m.patient_code)
                for m in read_archive(bytes(data), limits)]
    return [_Item(name, bytes(data))]


def _resolve_patient(s, actor: Actor, patient_id: int | None, item: _Item, img: DecodedImage) -> int | None:
    if patient_id is not None:
        return patient_id
    code = (item.patient_code or img.patient_code or "").strip()
    if not code:
        return None
    existing = s.exec(select(Patient).where(Patient.patient_code == code[:64])).first()
    if existing:
        return existing.id
    p = Patient(patient_code=code[:64], name=(img.patient_name or "")[:128], age=img.patient_age,
                sex=img.patient_sex or "", created_by=actor.user_id)
    s.add(p)
    s.flush()
    return p.id


@service(Permission.IMAGE_UPLOAD)
def ingest_files(
    actor: Actor,
    files: Iterable[tuple[str, bytes]],
    patient_id: int | None = None,
    modality: str | None = None,
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Ingest files (name, bytes). `modality` applies to PNG/JPEG (DICOM carries its own)."""
    rt = get_runtime()
    if modality is not None and modality not in MODALITIES:
        raise ValidationError(f"Unknown modality {modality!r}.")
    if patient_id is not None:
        with rt.session() as s:
            if s.get(Patient, patient_id) is None:
                raise NotFound(f"No patient with id {patient_id}.")
    files = list(files)
    report = IngestReport(batch_id=None)
    items: list[tuple[_Item | None, FileResult | None]] = []
    for name, data in files:
        name = str(name or "upload")[:200]
        try:
            items.extend((it, None) for it in _expand(name, data, rt))
        except InvalidImage as exc:
            items.append((None, FileResult(name, "rejected", str(exc))))
            _audit_reject(rt, actor, exc)
    total = len(items)
    for n, (item, early) in enumerate(items, start=1):
        if early is not None:
            report.results.append(early)
        else:
            report.results.append(_ingest_one(rt, actor, item, patient_id, modality, report))
        if progress:
            progress(n, total, report.results[-1].name)
    if report.batch_id is not None:
        with rt.session() as s:
            batch = s.get(UploadBatch, report.batch_id)
            batch.file_count, batch.accepted = len(report.results), report.accepted
            batch.duplicates, batch.rejected = report.duplicates, report.rejected
            s.add(batch)
    return report


def _audit_reject(rt: Runtime, actor: Actor, exc: MedShieldError) -> None:
    # The message may quote a file name (which can hold PHI): audit the error kind only.
    audit.record(rt.engine, actor.username, actor.role, "image.upload", "failure",
                 object_type="image", detail=f"rejected ({type(exc).__name__})")


def _ingest_one(rt: Runtime, actor: Actor, item: _Item, patient_id: int | None,
                modality: str | None, report: IngestReport) -> FileResult:
    try:
        img = decode_image(item.data, rt.settings.limits)
    except InvalidImage as exc:
        _audit_reject(rt, actor, exc)
        return FileResult(item.name, "rejected", str(exc), label=item.label, split=item.split)
    digest = sha256_hex(item.data)
    with rt.session() as s:
        dup = s.exec(select(Image).where(Image.sha256 == digest)).first()
        if dup is not None:
            return FileResult(item.name, "duplicate", f"Already stored as image #{dup.id}.",
                              image_id=dup.id, modality=dup.modality)
    mod = img.modality if img.source_format == "dicom" else (modality or "OT")
    thumb = thumbnail_png(img.pixels, photometric=img.photometric, frames=img.frames)
    key, new_blob = rt.store.put(item.data)
    thumb_key, new_thumb = rt.store.put(thumb)
    try:
        with rt.session() as s:
            if report.batch_id is None:
                batch = UploadBatch(uploaded_by=actor.user_id)
                s.add(batch)
                s.flush()
                report.batch_id = batch.id
            row = Image(
                sha256=digest, blob_key=key, thumb_key=thumb_key,
                patient_id=_resolve_patient(s, actor, patient_id, item, img),
                batch_id=report.batch_id, source_name=item.name[-255:],
                source_format=img.source_format, modality=mod, rows=img.rows, cols=img.cols,
                frames=img.frames, channels=img.channels, bit_depth=img.bit_depth,
                size_bytes=len(item.data), label=item.label or None, split=item.split or None,
                study_date=img.study_date, uploaded_by=actor.user_id,
                pixel_sha256=pixel_digest(img.pixels),
            )
            s.add(row)
            s.flush()
            image_id = row.id
    except SAIntegrityError:
        # Another upload stored the same bytes a moment ago: the blob is shared, keep it.
        with rt.session() as s:
            dup = s.exec(select(Image).where(Image.sha256 == digest)).first()
        return FileResult(item.name, "duplicate", "Already stored (uploaded at the same time).",
                          image_id=dup.id if dup else None, modality=mod)
    except BaseException:
        if new_blob:
            rt.store.delete(key)
        if new_thumb:
            rt.store.delete(thumb_key)
        raise
    audit.record(rt.engine, actor.username, actor.role, "image.upload", "success",
                 object_type="image", object_id=image_id,
                 detail=f"format={img.source_format} modality={mod} size={len(item.data)}")
    return FileResult(item.name, "accepted", "", image_id=image_id, modality=mod,
                      label=item.label, split=item.split)
