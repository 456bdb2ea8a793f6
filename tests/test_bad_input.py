"""Every hostile or broken input gets a clear message; the data and the store stay unchanged.

The audit log is the one thing that grows: each refusal is itself a security event and is
written as a `failure` audit event (without PHI). Everything else is compared row for row
(all other tables) and byte for byte (every file under the data directory)."""

from __future__ import annotations

import hashlib

from sqlalchemy import inspect, text

from core.services import ingest
from tests.hostile import hostile_corpus


def _snapshot(rt) -> tuple[dict, dict]:
    tables = {}
    with rt.engine.connect() as c:
        for name in sorted(inspect(c).get_table_names()):
            if name in ("audit_events", "alembic_version"):
                continue
            rows = c.execute(text(f'SELECT * FROM "{name}"')).fetchall()
            tables[name] = sorted(repr(tuple(r)) for r in rows)
    files = {}
    for p in sorted(rt.settings.data_dir.rglob("*")):
        if p.is_file() and not p.name.startswith("medshield.db"):
            files[str(p.relative_to(rt.settings.data_dir))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return tables, files


def _audit_count(rt, outcome=None) -> int:
    q = "SELECT count(*) FROM audit_events" + (f" WHERE outcome='{outcome}'" if outcome else "")
    with rt.engine.connect() as c:
        return c.execute(text(q)).scalar_one()


def test_corpus_is_large_enough():
    assert len(hostile_corpus()) >= 100


def test_every_hostile_file_is_refused_and_changes_nothing(rt, make_user):
    tech = make_user("technician")
    corpus = hostile_corpus()
    before = _snapshot(rt)
    problems = []
    for name, content in corpus:
        audits_before = _audit_count(rt)
        try:
            rep = ingest.ingest_files(tech, [(name, content)])
        except Exception as exc:  # nothing may escape as an unexpected error
            problems.append(f"{name}: raised {type(exc).__name__}: {exc}")
            continue
        statuses = {r.status for r in rep.results}
        if statuses != {"rejected"}:
            problems.append(f"{name}: {[(r.name, r.status) for r in rep.results]}")
        for r in rep.results:
            if len(r.reason) < 15 or "Traceback" in r.reason:
                problems.append(f"{name}: unclear reason {r.reason!r}")
        if _snapshot(rt) != before:
            problems.append(f"{name}: data or store changed")
            before = _snapshot(rt)
        added = _audit_count(rt) - audits_before
        if added != len(rep.results):
            problems.append(f"{name}: {added} audit events for {len(rep.results)} refusals")
    assert not problems, "\n".join(problems)
    assert _audit_count(rt, "failure") >= len(corpus)
    # the system still works after the onslaught
    from tests.fixtures import png_bytes

    assert ingest.ingest_files(tech, [("fine.png", png_bytes(seed=99))]).accepted == 1


def test_specific_messages(sqlite_rt):
    from core.imaging.decode import decode_image
    from core.errors import InvalidImage
    import pytest
    from tests import hostile

    cases = {
        "above the limit": hostile.png_header_only(100_000, 100_000),
        "decompression-bomb": hostile.png_bomb(),
        "no pixel data": hostile.dicom_bytes(with_pixels=False),
        "text file": b"just some text",
        "empty": b"",
        "truncated": hostile.dicom_bytes(64, 64)[:-500],
    }
    for expected, data in cases.items():
        with pytest.raises(InvalidImage, match=expected):
            decode_image(data)


def test_archive_messages():
    import pytest

    from core.errors import InvalidArchive
    from core.imaging.archive import read_archive
    from tests import hostile
    from tests.fixtures import png_bytes

    png = png_bytes()
    with pytest.raises(InvalidArchive, match="path traversal"):
        read_archive(hostile.zip_with_raw_names([("../x.png", png)]))
    with pytest.raises(InvalidArchive, match="zip bomb"):
        read_archive(hostile.zip_bomb(20))
    with pytest.raises(InvalidArchive, match="nested"):
        read_archive(hostile.zip_bytes({"in.zip": hostile.zip_bytes({"a.png": png})}))
    with pytest.raises(InvalidArchive, match="symbolic link"):
        read_archive(hostile.zip_symlink())


def test_hostile_files_imported_into_a_project_change_nothing(sqlite_rt):
    """The dataset import path (with its label-file parsing) refuses the same corpus cleanly."""
    from core.errors import MedShieldError
    from core.services import projects, users
    from tests.conftest import PASSWORD, admin_actor

    tech = users.create_user(admin_actor(sqlite_rt), "tim", "Tim", "technician", PASSWORD,
                             must_change_password=False).actor()
    proj = projects.create_project(tech, "Hostile", "detection", ["phi"])
    before = _snapshot(sqlite_rt)
    problems = []
    for name, content in hostile_corpus():
        try:
            rep = projects.import_dataset(tech, proj.id, name, content)
        except MedShieldError as exc:
            if len(str(exc)) < 15:
                problems.append(f"{name}: unclear message {exc!s}")
        except Exception as exc:
            problems.append(f"{name}: raised {type(exc).__name__}: {exc}")
        else:
            if rep.accepted or rep.shapes:
                problems.append(f"{name}: accepted {rep.accepted} image(s)")
        if _snapshot(sqlite_rt) != before:
            problems.append(f"{name}: data or store changed")
            before = _snapshot(sqlite_rt)
    assert not problems, "\n".join(problems)
