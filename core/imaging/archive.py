"""Safe reading of zip uploads: a zip of images, or a labelled dataset in class folders
(`train/<class>/*.png`, `<class>/*.png`) with an optional `labels.csv`.

Every structural check runs on the whole archive before a single entry is accepted, so a hostile
archive (bomb, path traversal, nested archive, symlink, encrypted entry, lying header) is refused
as a whole and nothing of it is stored.
"""

from __future__ import annotations

import csv
import io
import posixpath
import stat
import zipfile
from dataclasses import dataclass

from core.config import Limits
from core.errors import InvalidArchive
from core.imaging.sniff import ZIP_MAGICS

SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val",
          "validation": "val", "test": "test", "testing": "test"}
_SKIP_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}
_LABEL_FILES = {"labels.csv"}
_RATIO_MIN_BYTES = 256 * 1024  # small entries may compress well legitimately


@dataclass
class ArchiveMember:
    path: str
    data: bytes
    label: str | None = None
    split: str | None = None
    patient_code: str | None = None


def _check_name(name: str) -> str:
    if "\x00" in name:
        raise InvalidArchive("The zip holds an entry whose name contains a NUL byte.")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise InvalidArchive(f"The zip holds an absolute path ({name[:80]!r}); refused (path traversal).")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidArchive(f"The zip holds a '..' path ({name[:80]!r}); refused (path traversal).")
    return "/".join(parts)


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits) -> bytes:
    cap = min(info.file_size, limits.max_file_bytes)
    try:
        with zf.open(info) as fh:
            data = fh.read(cap + 1)
    except zipfile.BadZipFile as exc:
        raise InvalidArchive(f"The zip entry {info.filename[:80]!r} is corrupt ({exc}).") from exc
    except (OSError, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
        raise InvalidArchive(f"The zip entry {info.filename[:80]!r} cannot be read.") from exc
    if len(data) > cap:
        if info.file_size > limits.max_file_bytes:
            raise InvalidArchive(f"The zip entry {info.filename[:80]!r} is above the per-file limit.")
        raise InvalidArchive("The zip lies about an entry's size (a zip-bomb trick); refused.")
    return data


def _parse_labels(raw: bytes) -> dict[str, dict[str, str]]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArchive("labels.csv is not UTF-8 text.") from exc
    reader = csv.DictReader(io.StringIO(text))
    cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
    file_col = next((cols[c] for c in ("filename", "file", "path", "image") if c in cols), None)
    label_col = next((cols[c] for c in ("label", "class", "diagnosis") if c in cols), None)
    if file_col is None or label_col is None:
        raise InvalidArchive("labels.csv needs a 'filename' column and a 'label' column.")
    split_col, patient_col = cols.get("split"), cols.get("patient_id")
    out: dict[str, dict[str, str]] = {}
    for row in reader:
        fname = (row.get(file_col) or "").strip().replace("\\", "/")
        if not fname:
            continue
        out[fname] = {
            "label": (row.get(label_col) or "").strip()[:64],
            "split": SPLITS.get((row.get(split_col) or "").strip().lower(), "") if split_col else "",
            "patient": (row.get(patient_col) or "").strip()[:64] if patient_col else "",
        }
    return out


def read_archive(data: bytes, limits: Limits | None = None) -> list[ArchiveMember]:
    """Validate the whole archive, then return its members with labels from the layout."""
    return read_archive_with_sidecars(data, limits)[0]


def read_archive_with_sidecars(data: bytes, limits: Limits | None = None) -> tuple[list[ArchiveMember], dict[str, bytes]]:
    """As `read_archive`, plus the text files beside the images (path -> bytes): YOLO label
    files, classes.txt, data.yaml, COCO annotations.json. Same checks on every entry."""
    limits = limits or Limits()
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidArchive("The zip archive is corrupt or truncated and cannot be opened.") from exc

    files = [i for i in infos if not i.is_dir()]
    if len(files) > limits.max_zip_entries:
        raise InvalidArchive(f"The zip holds {len(files):,} files, above the limit of {limits.max_zip_entries:,}.")
    total = 0
    seen: set[str] = set()
    chosen: list[tuple[zipfile.ZipInfo, str]] = []
    for info in files:
        name = _check_name(info.filename)
        if _is_symlink(info):
            raise InvalidArchive(f"The zip holds a symbolic link ({info.filename[:80]!r}); refused.")
        if info.flag_bits & 0x1:
            raise InvalidArchive("The zip holds encrypted entries; upload an unencrypted archive.")
        if name.lower() in seen:
            raise InvalidArchive(f"The zip holds the same path twice ({info.filename[:80]!r}).")
        seen.add(name.lower())
        base = posixpath.basename(name).lower()
        if name.lower().startswith("__macosx/") or base.startswith(".") or base in _SKIP_NAMES:
            continue
        if len(name.split("/")) > limits.max_zip_depth + 1:
            raise InvalidArchive(f"The zip nests folders too deeply ({info.filename[:80]!r}).")
        if base.endswith((".zip", ".jar", ".7z", ".rar", ".gz", ".tar")):
            raise InvalidArchive("The zip holds another archive; nested archives are not accepted.")
        total += info.file_size
        if info.file_size > limits.max_file_bytes:
            raise InvalidArchive(f"The zip entry {info.filename[:80]!r} is above the per-file limit.")
        if info.file_size >= _RATIO_MIN_BYTES and info.file_size > limits.max_zip_ratio * max(info.compress_size, 1):
            raise InvalidArchive("The zip entry expands more than "
                                 f"{limits.max_zip_ratio:.0f}x (a zip bomb); refused.")
        chosen.append((info, name))
    if total > limits.max_zip_total_bytes:
        raise InvalidArchive(f"The zip would expand to {total / 2**20:,.0f} MB, above the "
                             f"{limits.max_zip_total_bytes / 2**20:,.0f} MB limit.")
    if total >= _RATIO_MIN_BYTES and total > limits.max_zip_ratio * max(len(data), 1):
        raise InvalidArchive(f"The zip expands more than {limits.max_zip_ratio:.0f}x (a zip bomb); refused.")

    members: list[ArchiveMember] = []
    sidecars: dict[str, bytes] = {}
    labels: dict[str, dict[str, str]] | None = None
    read_total = 0
    for info, name in chosen:
        raw = _read_entry(zf, info, limits)
        read_total += len(raw)
        if read_total > limits.max_zip_total_bytes:
            raise InvalidArchive("The zip expands beyond the total size limit; refused.")
        if raw.startswith(ZIP_MAGICS):
            raise InvalidArchive("The zip holds another archive; nested archives are not accepted.")
        if posixpath.basename(name).lower() in _LABEL_FILES and name.count("/") == 0:
            labels = _parse_labels(raw)
            continue
        if name.lower().endswith((".csv", ".txt", ".md", ".json", ".yaml", ".yml")):
            sidecars[name] = raw  # label files or documentation beside the images
            continue
        members.append(ArchiveMember(path=name, data=raw))
    if not members:
        raise InvalidArchive("The zip holds no files to import.")
    _apply_layout_labels(members)
    if labels is not None:
        for m in members:
            row = labels.get(m.path) or labels.get(posixpath.basename(m.path))
            if row:
                m.label = row["label"] or m.label
                m.split = row["split"] or m.split
                m.patient_code = row["patient"] or m.patient_code
    return members, sidecars


def _apply_layout_labels(members: list[ArchiveMember]) -> None:
    """`split/class/file` anywhere gives split and class; `class/file` gives the class when every
    file sits one folder down and there are at least two folders."""
    for m in members:
        parts = m.path.split("/")
        if len(parts) >= 3 and parts[-3].lower() in SPLITS:
            m.split, m.label = SPLITS[parts[-3].lower()], parts[-2][:64]
    if any(m.label for m in members):
        return
    parents = {m.path.split("/")[0] for m in members if m.path.count("/") == 1}
    if len(parents) >= 2 and all(m.path.count("/") == 1 for m in members):
        for m in members:
            m.label = m.path.split("/")[0][:64]
