"""The process-wide runtime: settings, database engine and blob store, created once.

`get_runtime()` builds it lazily from the environment, migrates the schema to head and creates the
first admin on a fresh database. Tests and the CLI call `configure(settings)` to point it
elsewhere.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from core.config import Settings, load_settings
from core.db.engine import create_db_engine, init_schema, session_scope
from core.crypto.keys import KeyRing
from core.secrets import deid_key
from core.storage import BlobStore, open_store


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    store: BlobStore
    keyring: KeyRing

    def session(self):
        return session_scope(self.engine)

    @property
    def deid_key(self) -> bytes:
        """Key for UID remapping and pseudonyms: stable across runs, independent of rotation."""
        return deid_key(self.settings.secrets_dir).encode()


_lock = threading.RLock()
_runtime: Runtime | None = None


def configure(settings: Settings | None = None, *, engine: Engine | None = None,
              bootstrap: bool = True) -> Runtime:
    """(Re)build the runtime. Creates the data directory, migrates, and bootstraps the admin."""
    global _runtime
    with _lock:
        settings = settings or load_settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        engine = engine or create_db_engine(settings.database_url)
        init_schema(engine)
        rt = Runtime(settings=settings, engine=engine, store=open_store(settings.blob_url, settings.blob_dir),
                     keyring=KeyRing(settings.secrets_dir, settings.master_key_b64))
        _runtime = rt
        if bootstrap:
            from core.bootstrap import bootstrap_admin, register_shipped

            bootstrap_admin(rt)
            register_shipped(rt)
        return rt


def get_runtime() -> Runtime:
    rt = _runtime
    if rt is not None:
        return rt
    with _lock:
        return _runtime or configure()


def reset() -> None:
    """Forget the runtime (tests)."""
    global _runtime
    with _lock:
        if _runtime is not None:
            _runtime.engine.dispose()
        _runtime = None
