"""Engine creation, schema migration (Alembic) and the session helper."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def create_db_engine(url: str, *, connect_args: dict | None = None) -> Engine:
    """SQLite gets WAL, foreign keys, a busy timeout and BEGIN IMMEDIATE transactions, so that
    writers from several threads/processes (app sessions, queue workers) serialise cleanly and the
    audit hash chain never forks. PostgreSQL uses a normal pooled engine."""
    args = dict(connect_args or {})
    if url.startswith("sqlite"):
        args.setdefault("check_same_thread", False)
        args.setdefault("timeout", 30)
        engine = create_engine(url, connect_args=args)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every test
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit no longer waits for an fsync; the database cannot be corrupted by a
            # crash, and only a power cut can drop the last commits (SQLite's advice for WAL)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # pragma: no cover
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, connect_args=args, pool_pre_ping=True)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    cfg.attributes["engine"] = engine
    return cfg


def init_schema(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (creates it on a fresh database)."""
    command.upgrade(alembic_config(engine), "head")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
