"""PACS work: find studies and series, pull series in, push protected results back.

- Find (technician): QIDO-RS or C-FIND by patient ID/name, study date range, modality, accession.
  Query values can be PHI: they are never logged or audited (the audit says how many studies came back).
- Pull (technician): a queue job. Each instance goes through the normal ingest path (size, type and
  pixel limits, checksums, patient from the header, audit) and its state is recorded per instance
  (pacs_instances), so a dropped connection resumes without duplicates and a second pull of the same
  series fetches only what is new. An instance that vanished from the PACS mid-pull is reported, not
  fatal; one the product rejects (hostile, oversize) is recorded with the reason.
- Push (technician, doctor): only protected images, as the stored protected DICOM: new Study/Series/SOP
  UIDs from the keyed UID map, PatientIdentityRemoved YES, the PS3.15 DeidentificationMethodCodeSequence,
  BurnedInAnnotation NO only where every detected text region was sealed. Anything else is refused here
  (and audited), whatever a page shows; the clear original never leaves.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Callable

from pydicom import dcmread
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlmodel import select

from core import audit
from core.db.models import Image, Job, PacsInstance, PacsNode, Patient, utcnow
from core.errors import AccessDenied, Conflict, NotFound, PacsError, ValidationError
from core.pacs import Query, SeriesInfo, StudyInfo
from core.runtime import get_runtime
from core.security import Actor, Permission, has_permission, service
from core.services import ingest, protect
from core.services.pacs_nodes import open_client
from core.taskqueue import queue, register

_DATE = re.compile(r"^\d{8}$")
_UID = re.compile(r"^[0-9.]{1,64}$")
CHUNK = 25  # instances per ingest batch, progress update and cancellation check
STREAM_MIN = 50  # a fresh pull of a series at least this large comes in one streamed request (DICOMweb)


def _clean_date(v: str, what: str) -> str:
    v = (v or "").replace("-", "").strip()
    if v and not _DATE.match(v):
        raise ValidationError(f"The {what} date must be YYYY-MM-DD.")
    return v


def _uid(v: str, what: str) -> str:
    v = (v or "").strip()
    if not _UID.match(v):
        raise ValidationError(f"{what} is not a DICOM UID.")
    return v


@service(Permission.PACS_QUERY)
def find_studies(actor: Actor, node_id: int, patient_id: str = "", patient_name: str = "", date_from: str = "",
                 date_to: str = "", modality: str = "", accession: str = "", limit: int = 200) -> list[StudyInfo]:
    q = Query(patient_id.strip()[:64], patient_name.strip()[:64], _clean_date(date_from, "first"),
              _clean_date(date_to, "last"), modality.strip().upper()[:16], accession.strip()[:16],
              max(1, min(int(limit), 1000)))
    if not any((q.patient_id, q.patient_name, q.date_from, q.date_to, q.modality, q.accession)):
        raise ValidationError("Search by at least one of patient ID, name, dates, modality or accession.")
    if q.date_from and q.date_to and q.date_from > q.date_to:
        raise ValidationError("The first date is after the last one.")
    rt = get_runtime()
    try:
        with open_client(node_id) as c:
            found = c.find_studies(q)
    except PacsError:
        audit.record(rt.engine, actor.username, actor.role, "pacs.find", "failure", object_type="pacs_node",
                     object_id=node_id)
        raise
    audit.record(rt.engine, actor.username, actor.role, "pacs.find", "success", object_type="pacs_node",
                 object_id=node_id, detail=f"studies={len(found)}")
    return found


@service(Permission.PACS_QUERY)
def find_series(actor: Actor, node_id: int, study_uid: str) -> list[SeriesInfo]:
    study_uid = _uid(study_uid, "The study")
    with open_client(node_id) as c:
        series = c.find_series(study_uid)
    with get_runtime().session() as s:
        have = {}
        for row in s.exec(select(PacsInstance.series_uid).where(PacsInstance.node_id == node_id,
                                                                 PacsInstance.study_uid == study_uid)).all():
            have[row] = have.get(row, 0) + 1
    for se in series:
        se.pulled = have.get(se.series_uid, 0)  # type: ignore[attr-defined]
    return series


# ------------------------------------------------------------------------------------------ pull

@dataclass
class PullInfo:
    job_id: int
    status: str
    progress: float
    message: str
    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def _pull_info(job: Job) -> PullInfo:
    r = job.result or {}
    return PullInfo(job.id, job.status, job.progress, job.message, int(r.get("total", 0)), dict(r.get("counts", {})))


@service(Permission.PACS_QUERY)
def pull_series(actor: Actor, node_id: int, study_uid: str, series_uids: list[str],
                patient_id: int | None = None) -> PullInfo:
    """Queue a pull of these series into a patient (None: the patient named by each file's header)."""
    rt = get_runtime()
    if not has_permission(actor.role, Permission.IMAGE_UPLOAD):
        audit.record(rt.engine, actor.username, actor.role, "deny:pull_series", "denied",
                     detail="missing permission image.upload")
        raise AccessDenied(f"Your role ({actor.role}) does not allow uploads, so it cannot pull from a PACS.")
    study_uid = _uid(study_uid, "The study")
    series = sorted({_uid(u, "A series") for u in series_uids})
    if not series:
        raise ValidationError("Choose at least one series.")
    with rt.session() as s:
        if patient_id is not None and s.get(Patient, patient_id) is None:
            raise NotFound(f"No patient with id {patient_id}.")
        if s.get(PacsNode, node_id) is None:
            raise NotFound(f"No PACS node with id {node_id}.")
        job = Job(kind="pacs_pull", status="queued", created_by=actor.user_id,
                  params={"node_id": node_id, "study_uid": study_uid, "series_uids": series,
                          "patient_id": patient_id, "actor": [actor.user_id, actor.username, actor.role]},
                  result={"total": 0, "counts": {}})
        s.add(job)
        s.flush()
        job_id = job.id
        info = _pull_info(job)
    audit.record(rt.engine, actor.username, actor.role, "pacs.pull", "success", object_type="job",
                 object_id=job_id, detail=f"node={node_id} series={len(series)}")
    queue(rt).pacs_pull(job_id)
    return info


@service(Permission.PACS_QUERY)
def get_pull(actor: Actor, job_id: int) -> PullInfo:
    with get_runtime().session() as s:
        job = s.get(Job, job_id)
        if job is None or job.kind != "pacs_pull":
            raise NotFound(f"No PACS pull with id {job_id}.")
        return _pull_info(job)


def _set(job_id: int, **fields) -> str:
    """Update the job; returns its status (a cancel made elsewhere wins)."""
    with get_runtime().session() as s:
        job = s.get(Job, job_id)
        if job.status in ("cancelled", "cancelling"):
            return "cancelled"
        for k, v in fields.items():
            setattr(job, k, v)
        s.add(job)
        return job.status


def _counts(node_id: int, study_uid: str, series: list[str], sops: set[str]) -> dict[str, int]:
    with get_runtime().session() as s:
        rows = s.exec(select(PacsInstance.sop_uid, PacsInstance.status).where(
            PacsInstance.node_id == node_id, PacsInstance.series_uid.in_(series))).all()  # type: ignore[attr-defined]
    out: dict[str, int] = {}
    for sop, status in rows:
        if sop in sops:
            out[status] = out.get(status, 0) + 1
    return out


ATTEMPTS = 4  # a dropped connection is retried (resuming) after 1, 2 and 4 s, then the pull fails


@register("pacs_pull")
def _pacs_pull(job_id: int) -> None:
    """Runs on a worker. Safe to run again (a retry, a re-queue after a dead worker): instances already
    recorded are skipped, so nothing is pulled twice."""
    import time

    rt = get_runtime()
    with rt.session() as s:
        job = s.get(Job, job_id)
        if job is None or job.status in ("cancelled", "cancelling", "done"):
            return
        p = dict(job.params)
        job.status, job.started_at = "running", job.started_at or utcnow()
        s.add(job)
    for attempt in range(ATTEMPTS):
        try:
            _pull(rt, job_id, p)
            return
        except PacsError as exc:
            if attempt == ATTEMPTS - 1:
                _set(job_id, status="failed", finished_at=utcnow(), message=str(exc)[:500])
                actor = Actor(*p["actor"])
                audit.record(rt.engine, actor.username, actor.role, "pacs.pull_done", "failure", object_type="job",
                             object_id=job_id, detail=type(exc).__name__)
                return
            _set(job_id, message=f"{exc} Retrying ({attempt + 1}/{ATTEMPTS - 1}).")
            time.sleep(2 ** attempt)


def _pull(rt, job_id: int, p: dict) -> None:
    """One attempt. A fresh series of STREAM_MIN+ instances on a server that can stream comes in one
    request with no listing first (the listing costs a PACS about as much as the transfer); anything
    else, and whatever a stream did not deliver, is listed and fetched instance by instance, skipping
    what is already recorded."""
    actor = Actor(*p["actor"])
    node_id, study, series_uids = p["node_id"], p["study_uid"], p["series_uids"]
    with rt.session() as s:
        started = set(s.exec(select(PacsInstance.series_uid).where(
            PacsInstance.node_id == node_id, PacsInstance.series_uid.in_(series_uids))).all())  # type: ignore[attr-defined]
    with open_client(node_id) as c:
        stream: dict[str, int] = {}
        if c.can_stream:
            for se in series_uids:
                if se not in started:
                    n_expected = c.series_count(study, se)
                    if n_expected is not None and n_expected >= STREAM_MIN:
                        stream[se] = n_expected
        wanted: list[tuple[str, str]] = []
        for se in series_uids:
            if se not in stream:
                wanted += [(se, sop) for sop in c.list_instances(study, se) if sop]
        sops = {sop for _, sop in wanted}
        with rt.session() as s:
            done = set(s.exec(select(PacsInstance.sop_uid).where(
                PacsInstance.node_id == node_id, PacsInstance.sop_uid.in_(sops))).all())  # type: ignore[attr-defined]
        todo = [(se, sop) for se, sop in wanted if sop not in done]
        total = len(wanted) + sum(stream.values())
        n = total - len(todo) - sum(stream.values())

        def report() -> str:
            return _set(job_id, progress=min(1.0, n / max(1, total)), message=f"{n} of {total} instances",
                        result={"total": total, "counts": _counts(node_id, study, series_uids, sops)})

        def take(se: str, items) -> bool:
            """Ingest (sop, bytes or None, why) items in batches; False when the job was cancelled."""
            nonlocal n
            batch: list[tuple[str, bytes | None, str]] = []
            for item in items:
                batch.append(item)
                sops.add(item[0])
                if len(batch) >= CHUNK:
                    _take_batch(rt, actor, job_id, node_id, study, se, batch, p.get("patient_id"))
                    n += len(batch)
                    batch = []
                    if report() == "cancelled":
                        return False
            if batch:
                _take_batch(rt, actor, job_id, node_id, study, se, batch, p.get("patient_id"))
                n += len(batch)
            return True

        if report() == "cancelled":
            return
        for se, expected in stream.items():
            if not take(se, _prefetch(((sop, data, "") for sop, data in c.stream_series(study, se)), 2 * CHUNK)):
                return
            got = {sop for sop, _ in _recorded(node_id, se)}
            if len(got) < expected:  # the stream came up short: list the series, fetch the rest one by one
                rest = [sop for sop in c.list_instances(study, se) if sop and sop not in got]
                if not take(se, _prefetch(c.retrieve_many(study, se, rest), 2 * CHUNK)):
                    return
        by_series: dict[str, list[str]] = {}
        for se, sop in todo:
            by_series.setdefault(se, []).append(sop)
        for se, group in by_series.items():
            whole = len(group) >= STREAM_MIN and len(group) == sum(1 for x, _ in wanted if x == se)
            if not take(se, _prefetch(c.retrieve_many(study, se, group, whole_series=whole), 2 * CHUNK)):
                return
    counts = _counts(node_id, study, series_uids, sops)
    failed = counts.get("rejected", 0) + counts.get("missing", 0)
    msg = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing to pull"
    _set(job_id, status="done", finished_at=utcnow(), progress=1.0, message=msg,
         result={"total": max(total, sum(counts.values())), "counts": counts, "failed": failed})
    audit.record(rt.engine, actor.username, actor.role, "pacs.pull_done", "success", object_type="job",
                 object_id=job_id, detail=msg[:200])


def _recorded(node_id: int, series_uid: str) -> list[tuple[str, str]]:
    with get_runtime().session() as s:
        return list(s.exec(select(PacsInstance.sop_uid, PacsInstance.status).where(  # type: ignore[call-overload]
            PacsInstance.node_id == node_id, PacsInstance.series_uid == series_uid)).all())


def _take_batch(rt, actor: Actor, job_id: int, node_id: int, study: str, series: str,
                batch: list[tuple[str, bytes | None, str]], patient_id: int | None) -> None:
    """Ingest a batch of retrieved instances (one upload batch) and record each one's state."""
    rows: list[tuple[str, str, str, int | None]] = []
    files: list[tuple[str, bytes]] = []
    for sop, data, why in batch:
        if data is None:
            rows.append((sop, "rejected" if why.startswith("unreadable") else "missing",
                         why or "not returned by the PACS", None))
        elif data[128:132] != b"DICM":
            rows.append((sop, "rejected", "not a DICOM file", None))
        else:
            files.append((f"pacs/{sop}.dcm", data))
    if files:
        rep = ingest.ingest_files(actor, files, patient_id=patient_id)
        for (name, _), r in zip(files, rep.results):
            rows.append((name[5:-4], r.status, r.reason, r.image_id))
    with rt.session() as s:
        have = set(s.exec(select(PacsInstance.sop_uid).where(
            PacsInstance.node_id == node_id, PacsInstance.sop_uid.in_([r[0] for r in rows]))).all())  # type: ignore[attr-defined]
    todo = [r for r in rows if r[0] not in have]  # the rest: recorded a moment ago by a retried run

    def state(sop: str, status: str, reason: str, image_id: int | None) -> PacsInstance:
        return PacsInstance(node_id=node_id, sop_uid=sop[:64], series_uid=series[:64], study_uid=study[:64],
                            status=status, reason=reason[:255], image_id=image_id, job_id=job_id)

    try:
        with rt.session() as s:
            s.add_all([state(*r) for r in todo])
    except SAIntegrityError:  # another run of this job got there first for some: one at a time
        for r in todo:
            try:
                with rt.session() as s:
                    s.add(state(*r))
            except SAIntegrityError:
                pass


def _prefetch(items, depth: int):
    """Iterate `items` (a retrieve from the PACS) on a background thread, `depth` ahead, so that the
    network transfer overlaps the ingest of what has arrived. Errors come out where they would have;
    closing this generator (a cancelled job) stops the thread."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    end = object()

    def put(v) -> bool:
        while not stop.is_set():
            try:
                q.put(v, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        it = iter(items)
        try:
            for v in it:
                if not put((None, v)):
                    return
            put((None, end))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put((exc, None))
        finally:
            close = getattr(it, "close", None)
            if close:
                close()

    t = threading.Thread(target=run, name="pacs-prefetch", daemon=True)
    t.start()
    try:
        while True:
            exc, v = q.get()
            if exc is not None:
                raise exc
            if v is end:
                return
            yield v
    finally:
        stop.set()
        t.join(timeout=30)


# ------------------------------------------------------------------------------------------ push

@dataclass
class PushReport:
    sent: int = 0
    refused: dict[int, str] = field(default_factory=dict)  # image id -> why (not protected, not DICOM...)
    failed: dict[int, str] = field(default_factory=dict)  # image id -> what the PACS said


def _pushable(actor: Actor, image_id: int) -> bytes:
    """The protected DICOM of an image, checked again here before anything leaves."""
    rt = get_runtime()
    with rt.session() as s:
        img = s.get(Image, image_id)
        if img is None:
            raise NotFound(f"No image with id {image_id}.")
        status, fmt = img.status, img.protected_format
    if status != "protected":
        raise Conflict(f"Image #{image_id} is not protected: protect it before sending it to a PACS.")
    if fmt != "dicom":
        raise Conflict(f"Image #{image_id} is not a DICOM image: only DICOM goes to a PACS.")
    data = protect.protected_file(actor, image_id).data
    ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
    if str(ds.get("PatientIdentityRemoved", "")) != "YES" or "DeidentificationMethodCodeSequence" not in ds:
        raise Conflict(f"Image #{image_id} has no de-identified header: protect it again before sending it.")
    return data


@service(Permission.PACS_PUSH)
def push_images(actor: Actor, node_id: int, image_ids: list[int],
                progress: Callable[[int, int], None] | None = None, batch: int = 20) -> PushReport:
    """Send protected images to a PACS (STOW-RS or C-STORE). Images that may not leave are refused
    one by one (audited); the rest are sent."""
    rt = get_runtime()
    ids = list(dict.fromkeys(int(i) for i in image_ids))
    if not ids:
        raise ValidationError("Choose at least one image.")
    report = PushReport()
    ready: list[tuple[int, bytes]] = []
    for i in ids:
        try:
            ready.append((i, _pushable(actor, i)))
        except (Conflict, NotFound) as exc:
            report.refused[i] = str(exc)
            audit.record(rt.engine, actor.username, actor.role, "pacs.push", "denied", object_type="image",
                         object_id=i, detail=type(exc).__name__)
    if ready:
        with open_client(node_id) as c:
            for start in range(0, len(ready), batch):
                part = ready[start:start + batch]
                res = c.store([d for _, d in part])
                sop_of = {i: str(dcmread(io.BytesIO(d), stop_before_pixels=True).SOPInstanceUID) for i, d in part}
                for i, _ in part:
                    if sop_of[i] in res.failed:
                        report.failed[i] = res.failed[sop_of[i]]
                    else:
                        report.sent += 1
                if progress:
                    progress(min(start + batch, len(ready)), len(ready))
    audit.record(rt.engine, actor.username, actor.role, "pacs.push", "success" if not report.failed else "failure",
                 object_type="pacs_node", object_id=node_id,
                 detail=f"sent={report.sent} refused={len(report.refused)} failed={len(report.failed)}")
    if not ready and report.refused:
        raise Conflict("Nothing was sent: " + next(iter(report.refused.values())))
    return report



def recover_pulls() -> int:
    """Re-queue every unfinished pull (lost with a killed worker); they resume where they stopped."""
    rt = get_runtime()
    with rt.session() as s:
        ids = s.exec(select(Job.id).where(Job.kind == "pacs_pull",
                                          Job.status.in_(("queued", "running")))).all()  # type: ignore[attr-defined]
    for i in ids:
        queue(rt).pacs_pull(i)
    return len(ids)
