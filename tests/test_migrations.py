"""The Alembic revisions build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic import command
from sqlalchemy import inspect
from sqlmodel import SQLModel

import core.db.models  # noqa: F401
from core.db.engine import alembic_config, create_db_engine, init_schema

TABLES = {"users", "patients", "upload_batches", "images", "regions", "annotations", "model_versions",
          "ai_results", "jobs", "audit_events", "settings", "alembic_version"}


def test_models_match_migrations(rt):
    with rt.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), SQLModel.metadata)
    assert diff == [], f"models and migrations differ: write a new Alembic revision: {diff}"
    assert TABLES <= set(inspect(rt.engine).get_table_names())


def test_downgrade_and_upgrade_again(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'm.db'}")
    init_schema(engine)
    command.downgrade(alembic_config(engine), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    init_schema(engine)
    assert TABLES <= set(inspect(engine).get_table_names())
    init_schema(engine)  # idempotent
    engine.dispose()
