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
GROUP_FILES = 32  # files per duplicate query, parallel store and transaction
GROUP_BYTES = 64 * 2**20  # ...or fewer, when they are large (progress stays live)


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


def _resolve_patient(s, actor: Actor, patient_id: int | None, item: _Item, img: DecodedImage,
                     known: dict[str, int] | None = None) -> int | None:
    """The patient a file goes to; `known` (code -> id) saves the lookup for the rest of a group."""
    if patient_id is not None:
        return patient_id
    code = (item.patient_code or img.patient_code or "").strip()[:64]
    if not code:
        return None
    if known is not None and code in known:
        return known[code]
    existing = s.exec(select(Patient.id).where(Patient.patient_code == code)).first()  # type: ignore[call-overload]
    if existing is None:
        p = Patient(patient_code=code, name=(img.patient_name or "")[:128], age=img.patient_age,
                    sex=img.patient_sex or "", created_by=actor.user_id)
        s.add(p)
        s.flush()
        existing = p.id
    if known is not None:
        known[code] = existing
    return existing


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
    group: list[tuple[_Item | None, FileResult | None]] = []
    group_bytes = 0
    pending: _Group | None = None  # its blobs are being written while the next group decodes

    def finish(g: _Group) -> None:
        for res in _finish_group(rt, actor, g, patient_id, report):
            report.results.append(res)
            if progress:
                progress(len(report.results), total, res.name)

    try:
        for i, (item, early) in enumerate(items):
            group.append((item, early))
            group_bytes += len(item.data) if item is not None else 0
            if len(group) >= GROUP_FILES or group_bytes >= GROUP_BYTES or i == total - 1:
                started = _start_group(rt, actor, group, modality)
                if pending is not None:
                    finish(pending)
                pending, group, group_bytes = started, [], 0
        if pending is not None:
            g, pending = pending, None
            finish(g)
    finally:
        if pending is not None:  # an error on the way: the group's rows were never written
            _abandon_group(rt, pending)
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


@dataclass
class _Ready:
    """A decoded, checked file ready to store (its pixels already dropped)."""
    item: _Item
    digest: str
    thumb: bytes
    img: DecodedImage
    pixel_sha: str
    modality: str


def _prepare(rt: Runtime, actor: Actor, item: _Item, modality: str | None) -> _Ready | FileResult:
    try:
        img = decode_image(item.data, rt.settings.limits)
    except InvalidImage as exc:
        _audit_reject(rt, actor, exc)
        return FileResult(item.name, "rejected", str(exc), label=item.label, split=item.split)
    mod = img.modality if img.source_format == "dicom" else (modality or "OT")
    ready = _Ready(item, sha256_hex(item.data),
                   thumbnail_png(img.pixels, photometric=img.photometric, frames=img.frames),
                   img, pixel_digest(img.pixels), mod)
    img.pixels = None  # type: ignore[assignment]  # a group holds metadata, not every decoded image
    return ready


@dataclass
class _Group:
    """A group of files on its way in: decoded and checked, its new blobs being written."""
    files: list[tuple[_Item | None, FileResult | None]]
    out: list  # FileResult, or ("same", index) for the second copy of bytes already in this group
    fresh: list[tuple[int, _Ready]]
    puts: object = None  # a Future of the blob writes


def _start_group(rt: Runtime, actor: Actor, group: list[tuple[_Item | None, FileResult | None]],
                 modality: str | None) -> _Group:
    """Decode and check a group of files, look up duplicates in one query and start writing the new
    blobs (in the background: the caller decodes the next group meanwhile)."""
    out: list = [None] * len(group)
    ready: list[tuple[int, _Ready]] = []
    for i, (item, early) in enumerate(group):
        if early is not None:
            out[i] = early
            continue
        r = _prepare(rt, actor, item, modality)  # type: ignore[arg-type]
        if isinstance(r, FileResult):
            out[i] = r
        else:
            ready.append((i, r))
    fresh: list[tuple[int, _Ready]] = []
    if ready:
        with rt.session() as s:
            stored = {sha: (iid, mod) for sha, iid, mod in s.exec(
                select(Image.sha256, Image.id, Image.modality).where(  # type: ignore[call-overload]
                    Image.sha256.in_({r.digest for _, r in ready}))).all()}  # type: ignore[attr-defined]
        first: dict[str, int] = {}
        for i, r in ready:
            if r.digest in stored:
                iid, mod = stored[r.digest]
                out[i] = FileResult(r.item.name, "duplicate", f"Already stored as image #{iid}.",
                                    image_id=iid, modality=mod)
            elif r.digest in first:
                out[i] = ("same", first[r.digest])
            else:
                first[r.digest] = i
                fresh.append((i, r))
    g = _Group(group, out, fresh)
    if fresh:
        g.puts = rt.store.put_many_async([r.item.data for _, r in fresh] + [r.thumb for _, r in fresh])
    return g


def _abandon_group(rt: Runtime, g: _Group) -> None:
    if g.puts is None:
        return
    try:
        puts = g.puts.result()  # type: ignore[attr-defined]
    except BaseException:  # noqa: BLE001 - put_many already removed what it wrote
        return
    for key, new in puts:
        if new:
            rt.store.delete(key)


def _finish_group(rt: Runtime, actor: Actor, g: _Group, patient_id: int | None,
                  report: IngestReport) -> list[FileResult]:
    """Write the group's rows in one transaction once its blobs are durable, then its audit events in
    one append. Results in the group's order. If the transaction meets a concurrent upload of the same
    bytes, the group falls back to one file at a time (which sorts out who stored what)."""
    out = g.out
    if g.fresh:
        puts, g.puts = g.puts.result(), None  # type: ignore[attr-defined]
        for i, res in _store_group(rt, actor, g.fresh, puts, patient_id, report):
            out[i] = res
    for i, v in enumerate(out):
        if isinstance(v, tuple):  # the same bytes twice in one upload: the second is a duplicate
            src = out[v[1]]
            out[i] = FileResult(g.files[i][0].name, "duplicate",  # type: ignore[union-attr]
                                f"Already stored as image #{src.image_id}." if src and src.image_id
                                else "The same file appears twice in this upload.",
                                image_id=src.image_id if src else None, modality=src.modality if src else "")
    return out


def _store_group(rt: Runtime, actor: Actor, fresh: list[tuple[int, _Ready]], puts: list[tuple[str, bool]],
                 patient_id: int | None, report: IngestReport) -> list[tuple[int, FileResult]]:
    n = len(fresh)
    had_batch = report.batch_id
    try:
        with rt.session() as s:
            if report.batch_id is None:
                batch = UploadBatch(uploaded_by=actor.user_id)
                s.add(batch)
                s.flush()
                report.batch_id = batch.id
            rows, known = [], {}
            for k, (_, r) in enumerate(fresh):
                img, item = r.img, r.item
                row = Image(
                    sha256=r.digest, blob_key=puts[k][0], thumb_key=puts[n + k][0],
                    patient_id=_resolve_patient(s, actor, patient_id, item, img, known),
                    batch_id=report.batch_id, source_name=item.name[-255:],
                    source_format=img.source_format, modality=r.modality, rows=img.rows, cols=img.cols,
                    frames=img.frames, channels=img.channels, bit_depth=img.bit_depth,
                    size_bytes=len(item.data), label=item.label or None, split=item.split or None,
                    study_date=img.study_date, uploaded_by=actor.user_id, pixel_sha256=r.pixel_sha,
                )
                s.add(row)
                rows.append(row)
            s.flush()
            ids = [row.id for row in rows]
    except SAIntegrityError:
        # Another upload stored some of these bytes a moment ago (blobs are shared: keep them).
        report.batch_id = had_batch
        return [(i, _ingest_one(rt, actor, r.item, patient_id, r.modality, report)) for i, r in fresh]
    except BaseException:
        for key, new in puts:
            if new:
                rt.store.delete(key)
        report.batch_id = had_batch
        raise
    audit.record_many(rt.engine, actor.username, actor.role, [
        ("image.upload", "success", "image", image_id,
         f"format={r.img.source_format} modality={r.modality} size={len(r.item.data)}")
        for image_id, (_, r) in zip(ids, fresh)])
    return [(i, FileResult(r.item.name, "accepted", "", image_id=image_id, modality=r.modality,
                           label=r.item.label, split=r.item.split))
            for image_id, (i, r) in zip(ids, fresh)]


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
