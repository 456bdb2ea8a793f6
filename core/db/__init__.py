from core.db.engine import create_db_engine, init_schema, session_scope  # noqa: F401
