"""Protect many files at once (the `protect` command): files, folders and zips go through the same
services as the Protect page (ingest with its checks, both detectors and the decision, sealing, DICOM
de-identification), one file at a time so memory stays flat; each protected image is written to the
output folder (DICOM stays DICOM, PNG/JPEG become PNG) and `report.json` says, per file, what was
sealed, why, how long it took, or why the file was refused. A bad file never stops the batch.
`dry_run` writes masked previews and stores nothing.
"""

from __future__ import annotations

import json
import os
import re
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from core.errors import MedShieldError
from core.imaging.deid import DeidOptions
from core.runtime import get_runtime
from core.security import Actor
from core.services import ingest, protect

REPORT = "report.json"


@dataclass
class FileReport:
    input: str  # the path as found
    name: str  # the file, or zip member, this row is about
    status: str  # protected | already-protected | previewed | rejected | failed
    image_id: int | None = None
    output: str | None = None  # file name in the output folder
    regions: list[dict] = field(default_factory=list)  # box, frame, class, reason, confidence, seen_by
    visible: int = 0  # technical lines left visible (dry runs report them; protect keeps them visible)
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class BatchReport:
    out_dir: str
    dry_run: bool
    files: list[FileReport] = field(default_factory=list)
    seconds: float = 0.0
    images_per_s: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def failed(self) -> int:
        return sum(f.status in ("rejected", "failed") for f in self.files)

    def to_json(self) -> str:
        d = asdict(self)
        d["failed"] = self.failed
        d["ok"] = len(self.files) - self.failed
        return json.dumps(d, indent=2, default=str)


@dataclass(frozen=True)
class Input:
    shown: str  # the path as found (for messages and the report)
    name: str  # the name outputs are called after: relative to the folder given, or the file's own name
    path: Path | None
    error: str | None = None


def gather(paths: list[str]) -> list[Input]:
    """Every input: files as given, folders walked (sorted, regular files only, hidden and symlinked
    entries skipped), anything else an error row."""
    out: list[Input] = []
    for raw in paths:
        p = Path(raw)
        if p.is_symlink():
            out.append(Input(raw, p.name, None, "Symbolic links are not followed."))
        elif p.is_file():
            out.append(Input(raw, p.name, p))
        elif p.is_dir():
            for root, dirs, files in os.walk(p, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    fp = Path(root) / f
                    if f.startswith(".") or fp.is_symlink() or not fp.is_file():
                        continue
                    out.append(Input(str(fp), str(fp.relative_to(p)), fp))
        else:
            out.append(Input(raw, p.name or raw, None, "No such file or folder."))
    return out


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _out_name(name: str, ext: str, taken: set[str]) -> str:
    """A file name inside the output folder for an input name (never a path: no traversal)."""
    stem = _SAFE.sub("_", name.replace("\\", "/").strip("/").replace("/", "__"))[-120:].strip("._") or "image"
    stem = re.sub(r"\.(dcm|dicom|png|jpe?g|zip)$", "", stem, flags=re.I)
    cand, n = f"{stem}.{ext}", 1
    while cand in taken:
        n += 1
        cand = f"{stem}-{n}.{ext}"
    taken.add(cand)
    return cand


def _region_rows(regions) -> list[dict]:
    return [{"box": [r.box.x0, r.box.y0, r.box.x1, r.box.y1], "frame": r.box.frame,
             "class": getattr(r, "kind", None) or getattr(r, "cls", "phi"), "reason": r.reason,
             "confidence": round(float(r.confidence), 3), "seen_by": r.seen_by} for r in regions]


def _write(out: Path, name: str, data: bytes) -> None:
    tmp = out / f".{name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, out / name)


def protect_paths(actor: Actor, paths: list[str], out_dir: str | Path, *, dry_run: bool = False,
                  mask: str = "solid", deid: DeidOptions | None = None, keep_annotations: bool = True,
                  patient_id: int | None = None, modality: str | None = None,
                  progress: Callable[[int, int, str], None] | None = None) -> BatchReport:
    rt = get_runtime()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True, mode=0o750)
    report = BatchReport(str(out), dry_run)
    taken = {REPORT}
    inputs = gather(paths)
    t0 = time.perf_counter()
    images = 0
    for n, item in enumerate(inputs, start=1):
        shown, path = item.shown, item.path
        rows: list[FileReport] = []
        try:
            if item.error is not None or path is None:
                rows = [FileReport(shown, item.name, "rejected", error=item.error)]
            elif path.stat().st_size > rt.settings.limits.max_file_bytes:
                rows = [FileReport(shown, item.name, "rejected", error=(
                    f"The file is {path.stat().st_size / 2**20:.1f} MB, above the "
                    f"{rt.settings.limits.max_file_bytes / 2**20:.0f} MB limit."))]
            elif dry_run:
                rows = _preview(actor, item, path.read_bytes(), out, taken, mask, keep_annotations)
            else:
                rows = _protect(actor, item, path.read_bytes(), out, taken, mask, deid, keep_annotations,
                                patient_id, modality)
        except MedShieldError as exc:
            rows = [FileReport(shown, item.name, "failed", error=str(exc))]
        except OSError as exc:
            rows = [FileReport(shown, item.name, "failed", error=f"Could not read the file ({exc.strerror or exc}).")]
        except Exception as exc:  # one broken file never stops the batch; its row says what went wrong
            rows = [FileReport(shown, item.name, "failed", error=f"Unexpected error: {type(exc).__name__}")]
        report.files.extend(rows)
        images += sum(r.status in ("protected", "already-protected", "previewed") for r in rows)
        if progress:
            progress(n, len(inputs), shown)
    report.seconds = time.perf_counter() - t0
    report.images_per_s = images / report.seconds if report.seconds > 0 else 0.0
    report.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _write(out, REPORT, report.to_json().encode())
    return report


def _preview(actor, item: Input, data, out, taken, mask, keep_annotations) -> list[FileReport]:
    rows = []
    shown = item.shown
    for pv in protect.preview_file(actor, item.name, data, mask, keep_annotations):
        if pv.error:
            rows.append(FileReport(shown, pv.name, "rejected", error=pv.error))
            continue
        name = _out_name(pv.name, "preview.png", taken)
        _write(out, name, pv.png or b"")
        rows.append(FileReport(shown, pv.name, "previewed", None, name, _region_rows(pv.regions), len(pv.visible),
                               {k: round(v, 1) for k, v in pv.timings_ms.items()}))
    return rows


def _protect(actor, item: Input, data, out, taken, mask, deid, keep_annotations, patient_id,
             modality) -> list[FileReport]:
    rows = []
    shown = item.shown
    t0 = time.perf_counter()
    rep = ingest.ingest_files(actor, [(item.name, data)], patient_id=patient_id, modality=modality)
    t_ingest = (time.perf_counter() - t0) * 1e3 / max(1, len(rep.results))
    for r in rep.results:
        if r.status == "rejected" or r.image_id is None:
            rows.append(FileReport(shown, r.name, "rejected", error=r.reason or "Refused."))
            continue
        try:
            status, timings = "already-protected", {"ingest": round(t_ingest, 1)}
            if _status(r.image_id) == "uploaded":
                res = protect.protect_image(actor, r.image_id, [], mask, deid, use_detector=True,
                                            keep_annotations=keep_annotations)
                status = "protected"
                timings.update({k: round(v, 1) for k, v in res.timings_ms.items()})
            pf = protect.protected_file(actor, r.image_id)
            name = _out_name(r.name, "dcm" if pf.fmt == "dicom" else "png", taken)
            _write(out, name, pf.data)
            rows.append(FileReport(shown, r.name, status, r.image_id, name,
                                   _region_rows(protect.sealed_regions(actor, r.image_id)), 0, timings))
        except MedShieldError as exc:
            rows.append(FileReport(shown, r.name, "failed", r.image_id, error=str(exc)))
    return rows


def _status(image_id: int) -> str:
    from core.db.models import Image

    with get_runtime().session() as s:
        row = s.get(Image, image_id)
        return row.status if row else "missing"
