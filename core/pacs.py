"""PACS clients: DICOMweb (QIDO-RS, WADO-RS, STOW-RS through `dicomweb-client`) and DIMSE (C-ECHO,
C-FIND, C-GET, C-STORE through `pynetdicom`), behind one small interface. No HTTP or DIMSE by hand.

Every network failure becomes a PacsError whose message says what went wrong (refused, timed out, TLS,
authentication, not found) without echoing credentials or query values (they may hold PHI).
"""

from __future__ import annotations

import io
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Iterator

from pydicom import dcmread
from pydicom.dataset import Dataset

from core.errors import PacsError

KINDS = ("dicomweb", "dimse")
AUTHS = ("none", "basic", "bearer")
# dicomweb-client and pynetdicom log request URLs / identifiers at DEBUG and INFO: keep them quiet
for _name in ("dicomweb_client", "pynetdicom", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

@dataclass(frozen=True)
class NodeConfig:
    kind: str
    url: str = ""
    auth: str = "none"
    username: str = ""
    secret: str = ""  # password or bearer token, clear in memory only
    ae_title: str = ""  # called AE (dimse)
    host: str = ""
    port: int = 0
    calling_ae: str = "MEDSHIELD"
    timeout: float = 15.0
    verify_tls: bool = True

    def where(self) -> str:
        return self.url if self.kind == "dicomweb" else f"{self.ae_title}@{self.host}:{self.port}"

@dataclass
class StudyInfo:
    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    accession: str = ""
    description: str = ""
    modalities: str = ""
    series_count: int | None = None
    instance_count: int | None = None

@dataclass
class SeriesInfo:
    series_uid: str
    modality: str = ""
    description: str = ""
    number: str = ""
    instance_count: int | None = None

@dataclass
class Query:
    patient_id: str = ""
    patient_name: str = ""
    date_from: str = ""  # YYYYMMDD
    date_to: str = ""
    modality: str = ""
    accession: str = ""
    limit: int = 200

    def name_tokens(self) -> list[str]:
        return [t.lower() for t in re.split(r"[\s,^*]+", self.patient_name) if t]

    def name_pattern(self) -> str:
        """A typed name as a DICOM wildcard query that any word order matches: the longest word,
        *WORD* (case-insensitive on Orthanc and dcm4chee); `name_matches` then keeps the studies whose
        name holds every word, so "Doe, Jane", "DOE^JANE" and "jane doe" find the same patient."""
        tokens = self.name_tokens()
        return f"*{max(tokens, key=len)}*" if tokens else ""

    def name_matches(self, name: str) -> bool:
        words = [w for w in re.split(r"[\s,^]+", (name or "").lower()) if w]
        return all(any(w.startswith(t) or t in w for w in words) for t in self.name_tokens())

    def date_range(self) -> str:
        if not (self.date_from or self.date_to):
            return ""
        if self.date_from == self.date_to:
            return self.date_from
        return f"{self.date_from}-{self.date_to}"

@dataclass
class StoreResult:
    sent: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # SOP instance UID -> reason

def _int(v) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None

def _s(ds: Dataset, kw: str) -> str:
    v = ds.get(kw, "")
    if v is None:
        return ""
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return "\\".join(str(x) for x in v)
    return str(v)

def study_from(ds: Dataset) -> StudyInfo:
    return StudyInfo(_s(ds, "StudyInstanceUID"), _s(ds, "PatientID"), _s(ds, "PatientName"), _s(ds, "StudyDate"),
                     _s(ds, "AccessionNumber"), _s(ds, "StudyDescription"), _s(ds, "ModalitiesInStudy"),
                     _int(ds.get("NumberOfStudyRelatedSeries")), _int(ds.get("NumberOfStudyRelatedInstances")))

def series_from(ds: Dataset) -> SeriesInfo:
    return SeriesInfo(_s(ds, "SeriesInstanceUID"), _s(ds, "Modality"), _s(ds, "SeriesDescription"),
                      _s(ds, "SeriesNumber"), _int(ds.get("NumberOfSeriesRelatedInstances")))

def to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()

class Client:
    """One PACS node. Subclasses implement the five operations."""

    def __init__(self, cfg: NodeConfig):
        self.cfg = cfg

    def echo(self) -> float:  # round trip, ms
        raise NotImplementedError

    def find_studies(self, q: Query) -> list[StudyInfo]:
        raise NotImplementedError

    def find_series(self, study_uid: str) -> list[SeriesInfo]:
        raise NotImplementedError

    def list_instances(self, study_uid: str, series_uid: str) -> list[str]:
        raise NotImplementedError

    def retrieve(self, study_uid: str, series_uid: str, sop_uids: list[str]) -> Iterator[tuple[str, bytes | None, str]]:
        """(SOP instance UID, file bytes or None, reason when None), one per requested instance."""
        raise NotImplementedError

    def retrieve_many(self, study_uid: str, series_uid: str, sop_uids: list[str], whole_series: bool = False):
        """Like `retrieve`; `whole_series` says these are all of the series' instances (a client may then
        fetch the series in one request)."""
        return self.retrieve(study_uid, series_uid, sop_uids)

    can_stream = False  # True: `series_count` and `stream_series` work (one request for a whole series)

    def series_count(self, study_uid: str, series_uid: str) -> int | None:
        """How many instances the PACS holds in a series (None: it does not say)."""
        return None

    def stream_series(self, study_uid: str, series_uid: str) -> Iterator[tuple[str, bytes]]:
        """(SOP instance UID, file bytes) for every instance of a series, in one request."""
        raise NotImplementedError

    def store(self, files: list[bytes]) -> StoreResult:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

# ---------------------------------------------------------------- DICOMweb

class DicomWebClient(Client):
    def __init__(self, cfg: NodeConfig):
        super().__init__(cfg)
        import requests
        from dicomweb_client.api import DICOMwebClient

        timeout = cfg.timeout

        class _Session(requests.Session):
            def request(self, method, url, *a, **kw):
                kw["timeout"] = timeout
                # '*' is legal in a query string; some servers (Orthanc 1.10) do not decode %2A
                return super().request(method, url.replace("%2A", "*"), *a, **kw)

        s = _Session()
        s.verify = cfg.verify_tls
        if cfg.auth == "basic":
            s.auth = (cfg.username, cfg.secret)
        elif cfg.auth == "bearer":
            s.headers["Authorization"] = f"Bearer {cfg.secret}"
        self._requests = requests
        self._session = s
        self.api = DICOMwebClient(url=cfg.url.rstrip("/"), session=s, timeout=cfg.timeout)
        # its own retries (5 attempts, exponential waits, on any exception) would turn a refused
        # connection into minutes: a pull job retries and resumes itself
        self.api.set_http_retry_params(retry=False)

    def _call(self, what: str, fn, *a, **kw):
        r = self._requests
        try:
            return fn(*a, **kw)
        except r.exceptions.SSLError as exc:
            raise PacsError(f"TLS failure talking to {self.cfg.url} ({type(exc).__name__}): check the "
                            "certificate or the https:// address.") from None
        except r.exceptions.Timeout:
            raise PacsError(f"The PACS at {self.cfg.url} did not answer within {self.cfg.timeout:.0f} s "
                            f"({what}).") from None
        except r.exceptions.ConnectionError:
            raise PacsError(f"Cannot connect to the PACS at {self.cfg.url}: the connection was refused or the "
                            "host is unreachable.") from None
        except r.exceptions.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            if code in (401, 403):
                raise PacsError(f"The PACS refused our credentials (HTTP {code}) for {what}: check the user "
                                "name and password or token.") from None
            if code == 404:
                raise PacsError(f"Not found on the PACS (HTTP 404) during {what}: it may have been deleted.") from None
            raise PacsError(f"The PACS answered HTTP {code} to {what}.") from None
        except r.exceptions.RequestException as exc:
            raise PacsError(f"Request to the PACS failed during {what} ({type(exc).__name__}).") from None
        except (ValueError, KeyError, TypeError) as exc:  # a reply that is not DICOM JSON / multipart
            raise PacsError(f"The PACS sent a reply we cannot read during {what} ({type(exc).__name__}).") from None

    def echo(self) -> float:
        t = time.perf_counter()
        self._call("a test query", self.api.search_for_studies, limit=1)
        return (time.perf_counter() - t) * 1000

    def find_studies(self, q: Query) -> list[StudyInfo]:
        filters = {k: v for k, v in {
            "PatientID": q.patient_id, "PatientName": q.name_pattern(), "StudyDate": q.date_range(),
            "ModalitiesInStudy": q.modality, "AccessionNumber": q.accession}.items() if v}
        rows = self._call("the study search", self.api.search_for_studies, search_filters=filters,
                          limit=q.limit,
                          fields=["NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
                                  "ModalitiesInStudy", "StudyDescription"])
        return [st for st in (study_from(Dataset.from_json(r)) for r in rows or []) if q.name_matches(st.patient_name)]

    def find_series(self, study_uid: str) -> list[SeriesInfo]:
        rows = self._call("the series search", self.api.search_for_series, study_instance_uid=study_uid,
                          fields=["NumberOfSeriesRelatedInstances", "SeriesDescription", "SeriesNumber"])
        return [series_from(Dataset.from_json(r)) for r in rows or []]

    def list_instances(self, study_uid: str, series_uid: str) -> list[str]:
        rows = self._call("the instance search", self.api.search_for_instances, study_instance_uid=study_uid,
                          series_instance_uid=series_uid, get_remaining=True)
        return [str(Dataset.from_json(r).get("SOPInstanceUID", "")) for r in rows or []]

    def _raw_parts(self, url: str, stream: bool) -> Iterator[bytes]:
        """The parts of a WADO-RS multipart reply as the server sent them (its own bytes, no re-encoding),
        through dicomweb-client's request and multipart decoding."""

        headers = {"Accept": self.api._build_multipart_accept_header_field_value(
            (("application/dicom", "*"),), {"*": "application/dicom"})}
        response = self.api._http_get(url, headers=headers, stream=stream)
        if response.headers.get("Content-Type", "").startswith("application/dicom"):
            return iter([response.content])  # a server that sends the part bare
        return self.api._decode_multipart_message(response, stream=stream)

    def _instance_bytes(self, study_uid: str, series_uid: str, sop: str) -> bytes:
        from dicomweb_client.web import _Transaction

        url = self.api._get_instances_url(_Transaction.RETRIEVE, study_uid, series_uid, sop)
        parts = list(self._raw_parts(url, stream=False))
        if len(parts) != 1:
            raise ValueError("expected one part")
        return parts[0]

    def retrieve_series(self, study_uid: str, series_uid: str) -> Iterator[bytes]:
        """Every instance of a series in one streamed WADO-RS request (memory stays flat)."""
        from dicomweb_client.web import _Transaction

        url = self.api._get_series_url(_Transaction.RETRIEVE, study_uid, series_uid)
        parts = self._call("a series retrieve", self._raw_parts, url, True)
        while True:
            try:
                part = self._call("a series retrieve", next, parts)
            except StopIteration:
                return
            yield part

    can_stream = True

    def series_count(self, study_uid, series_uid):
        rows = self._call("the series search", self.api.search_for_series, study_instance_uid=study_uid,
                          search_filters={"SeriesInstanceUID": series_uid},
                          fields=["NumberOfSeriesRelatedInstances"])
        for r in rows or []:
            v = (r.get("00201209") or {}).get("Value") or []
            if v:
                try:
                    return int(v[0])
                except (TypeError, ValueError):
                    return None
        return None

    def stream_series(self, study_uid, series_uid):
        seen: set[str] = set()
        for part in self.retrieve_series(study_uid, series_uid):
            try:
                sop = str(dcmread(io.BytesIO(part), stop_before_pixels=True, force=True,
                                  specific_tags=["SOPInstanceUID"]).get("SOPInstanceUID", ""))
            except Exception:  # noqa: BLE001 - a part we cannot even read the UID of: skipped (reported as
                continue  # missing by the caller, which compares with the list of the series)
            if sop and sop not in seen:
                seen.add(sop)
                yield sop, part

    def retrieve_many(self, study_uid, series_uid, sop_uids, whole_series=False):
        if not whole_series:
            yield from self.retrieve(study_uid, series_uid, sop_uids)
            return
        wanted, seen = set(sop_uids), set()
        for sop, part in self.stream_series(study_uid, series_uid):
            if sop in wanted:
                seen.add(sop)
                yield sop, part, ""
        for sop in sop_uids:
            if sop not in seen:
                yield sop, None, "no longer on the PACS (or unreadable)"

    def retrieve(self, study_uid, series_uid, sop_uids):
        for sop in sop_uids:
            try:
                data = self._call("a retrieve", self._instance_bytes, study_uid, series_uid, sop)
                if data[128:132] != b"DICM":
                    data = to_bytes(dcmread(io.BytesIO(data), force=True))  # a bare data set: add the file meta
            except PacsError as exc:
                if "404" in str(exc):
                    yield sop, None, "no longer on the PACS"
                    continue
                if "cannot read" in str(exc):
                    yield sop, None, "unreadable: the PACS sent something that is not a DICOM file we accept"
                    continue
                raise
            except Exception as exc:  # noqa: BLE001 - a hostile instance is refused, the pull goes on
                yield sop, None, f"unreadable: not a DICOM file we accept ({type(exc).__name__})"
                continue
            yield sop, data, ""

    def store(self, files: list[bytes]) -> StoreResult:
        res = StoreResult()
        datasets = [dcmread(io.BytesIO(f)) for f in files]
        reply = self._call("the upload (STOW-RS)", self.api.store_instances, datasets=datasets)
        failed = {}
        for item in (reply.get("FailedSOPSequence", []) if reply is not None else []):
            failed[str(item.get("ReferencedSOPInstanceUID", "?"))] = f"failure reason {item.get('FailureReason', '?')}"
        res.failed = failed
        res.sent = len(datasets) - len(failed)
        return res

    def close(self) -> None:
        self._session.close()

# ---------------------------------------------------------------- DIMSE

_STORAGE = [  # the storage SOP classes we accept back from a C-GET (at most 128 contexts in all)
    "CTImageStorage", "MRImageStorage", "ComputedRadiographyImageStorage",
    "DigitalXRayImageStorageForPresentation", "DigitalXRayImageStorageForProcessing",
    "UltrasoundImageStorage", "UltrasoundMultiFrameImageStorage", "SecondaryCaptureImageStorage",
    "MultiFrameGrayscaleByteSecondaryCaptureImageStorage", "MultiFrameGrayscaleWordSecondaryCaptureImageStorage",
    "MultiFrameTrueColorSecondaryCaptureImageStorage", "DigitalMammographyXRayImageStorageForPresentation",
    "XRayAngiographicImageStorage", "XRayRadiofluoroscopicImageStorage", "NuclearMedicineImageStorage",
    "PositronEmissionTomographyImageStorage", "EnhancedCTImageStorage", "EnhancedMRImageStorage",
    "VLEndoscopicImageStorage", "VLPhotographicImageStorage", "OphthalmicPhotography8BitImageStorage",
]
_SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70",
             "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5",
             "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"]

class DimseClient(Client):
    def _ae(self):
        from pynetdicom import AE

        ae = AE(ae_title=(self.cfg.calling_ae or "MEDSHIELD")[:16])
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.cfg.timeout
        ae.connection_timeout = self.cfg.timeout
        return ae

    def _associate(self, ae, what: str, ext_neg=None):
        try:
            assoc = ae.associate(self.cfg.host, int(self.cfg.port), ae_title=self.cfg.ae_title[:16],
                                 ext_neg=ext_neg)
        except (OSError, ValueError) as exc:
            raise PacsError(f"Cannot open a DICOM association with {self.cfg.where()} ({type(exc).__name__}).") from None
        if assoc.is_established:
            return assoc
        if assoc.is_rejected:
            raise PacsError(f"{self.cfg.where()} rejected our association for {what}: check the called AE title "
                            f"and that {self.cfg.calling_ae} is allowed on the PACS.")
        raise PacsError(f"Cannot connect to {self.cfg.where()} for {what}: refused, unreachable or no answer "
                        f"within {self.cfg.timeout:.0f} s.")

    def echo(self) -> float:
        from pynetdicom.sop_class import Verification

        ae = self._ae()
        ae.add_requested_context(Verification)
        t = time.perf_counter()
        assoc = self._associate(ae, "C-ECHO")
        try:
            status = assoc.send_c_echo()
        finally:
            assoc.release()
        if not status or status.Status != 0:
            raise PacsError(f"{self.cfg.where()} answered C-ECHO with a failure status.")
        return (time.perf_counter() - t) * 1000

    def _find(self, identifier: Dataset, what: str) -> list[Dataset]:
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

        ae = self._ae()
        ae.add_requested_context(FIND)
        assoc = self._associate(ae, what)
        out = []
        try:
            for status, ds in assoc.send_c_find(identifier, FIND):
                if not status:
                    raise PacsError(f"The C-FIND of {what} was aborted or timed out.")
                if status.Status in (0xFF00, 0xFF01) and ds is not None:
                    out.append(ds)
                elif status.Status not in (0x0000, 0xFF00, 0xFF01):
                    raise PacsError(f"{self.cfg.where()} answered the {what} with status 0x{status.Status:04X}.")
        finally:
            if assoc.is_established:
                assoc.release()
        return out

    def find_studies(self, q: Query) -> list[StudyInfo]:
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = ""
        ds.PatientID = q.patient_id
        ds.PatientName = q.name_pattern()
        ds.StudyDate = q.date_range()
        ds.AccessionNumber = q.accession
        ds.ModalitiesInStudy = q.modality
        ds.StudyDescription = ""
        ds.NumberOfStudyRelatedSeries = None
        ds.NumberOfStudyRelatedInstances = None
        found = [study_from(d) for d in self._find(ds, "study search")]
        return [st for st in found if q.name_matches(st.patient_name)][: q.limit]

    def find_series(self, study_uid: str) -> list[SeriesInfo]:
        ds = Dataset()
        ds.QueryRetrieveLevel = "SERIES"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = ""
        ds.Modality = ""
        ds.SeriesDescription = ""
        ds.SeriesNumber = None
        ds.NumberOfSeriesRelatedInstances = None
        return [series_from(d) for d in self._find(ds, "series search")]

    def list_instances(self, study_uid: str, series_uid: str) -> list[str]:
        ds = Dataset()
        ds.QueryRetrieveLevel = "IMAGE"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study_uid, series_uid, ""
        return [str(d.get("SOPInstanceUID", "")) for d in self._find(ds, "instance search")]

    def retrieve(self, study_uid, series_uid, sop_uids):
        """C-GET, one instance per request on one association (a dropped one reconnects once)."""
        from pynetdicom import build_role, evt
        from pynetdicom import sop_class as sc

        got: dict[str, bytes] = {}

        def on_store(event):
            try:
                data = event.encoded_dataset()
                got[str(event.request.AffectedSOPInstanceUID)] = data
            except Exception:  # noqa: BLE001 - refuse this instance, keep the association
                return 0xC211
            return 0x0000

        def open_assoc():
            ae = self._ae()
            ae.add_requested_context(sc.StudyRootQueryRetrieveInformationModelGet)
            roles = []
            for name in _STORAGE:
                uid = getattr(sc, name)
                ae.add_requested_context(uid, _SYNTAXES)
                roles.append(build_role(uid, scp_role=True))
            return self._associate_get(ae, roles, [(evt.EVT_C_STORE, on_store)])

        assoc = open_assoc()
        try:
            for sop in sop_uids:
                ident = Dataset()
                ident.QueryRetrieveLevel = "IMAGE"
                ident.StudyInstanceUID, ident.SeriesInstanceUID, ident.SOPInstanceUID = study_uid, series_uid, sop
                if not assoc.is_established:
                    assoc = open_assoc()
                final = None
                for status, _ in assoc.send_c_get(ident, sc.StudyRootQueryRetrieveInformationModelGet):
                    if status:
                        final = status.Status
                if final is None:
                    raise PacsError(f"The connection to {self.cfg.where()} dropped during a C-GET.")
                data = got.pop(sop, None)
                if data is None:
                    yield sop, None, f"no longer on the PACS (C-GET status 0x{final:04X})"
                else:
                    yield sop, data, ""
        finally:
            if assoc.is_established:
                assoc.release()

    def _associate_get(self, ae, roles, handlers):
        try:
            assoc = ae.associate(self.cfg.host, int(self.cfg.port), ae_title=self.cfg.ae_title[:16],
                                 ext_neg=roles, evt_handlers=handlers)
        except (OSError, ValueError) as exc:
            raise PacsError(f"Cannot open a DICOM association with {self.cfg.where()} ({type(exc).__name__}).") from None
        if not assoc.is_established:
            raise PacsError(f"Cannot open a C-GET association with {self.cfg.where()} (rejected, refused or "
                            "no answer).")
        return assoc

    def store(self, files: list[bytes]) -> StoreResult:
        res = StoreResult()
        datasets = [dcmread(io.BytesIO(f)) for f in files]
        ae = self._ae()
        for ctx in {(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in datasets}:
            ae.add_requested_context(*ctx)
        assoc = self._associate(ae, "C-STORE")
        try:
            for d in datasets:
                status = assoc.send_c_store(d)
                sop = str(d.SOPInstanceUID)
                if not status:
                    res.failed[sop] = "no answer (connection dropped or timed out)"
                elif status.Status not in (0x0000, 0xB000, 0xB007, 0xB006):
                    res.failed[sop] = f"status 0x{status.Status:04X}"
                else:
                    res.sent += 1
        finally:
            if assoc.is_established:
                assoc.release()
        return res

def client_for(cfg: NodeConfig) -> Client:
    if cfg.kind == "dicomweb":
        return DicomWebClient(cfg)
    if cfg.kind == "dimse":
        return DimseClient(cfg)
    raise PacsError(f"Unknown PACS kind {cfg.kind!r}.")
