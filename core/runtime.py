"""The process-wide runtime: settings, database engine and blob store, created once.

`get_runtime()` builds it lazily from the environment, migrates the schema to head and creates the
first admin on a fresh database. Tests and the CLI call `configure(settings)` to point it
elsewhere.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import func, select

from core.config import Settings, load_settings
from core.db.engine import create_db_engine, init_schema, session_scope
from core.crypto.keys import KeyRing
from core.db.models import User
from core.secrets import read_or_create_secret
from core.storage import BlobStore


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
        return read_or_create_secret(self.settings.secrets_dir / "deid.key").encode()


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
        rt = Runtime(settings=settings, engine=engine, store=BlobStore(settings.blob_dir),
                     keyring=KeyRing(settings.secrets_dir, settings.master_key_b64))
        _runtime = rt
        if bootstrap:
            bootstrap_admin(rt)
            from core.services.models import register_shipped

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


def bootstrap_admin(rt: Runtime) -> str | None:
    """On a database with no users, create the first admin.

    The password comes from MEDSHIELD_ADMIN_PASSWORD; without it a one-time password is generated,
    printed once to the console, and must be changed at first login. Returns the generated
    password (None when none was generated or a user already exists)."""
    from core.services.users import hash_password  # local: users imports runtime

    with rt.session() as s:
        if s.exec(select(func.count()).select_from(User)).one() > 0:
            return None
        generated = None
        password = rt.settings.admin_password
        if not password:
            generated = password = secrets.token_urlsafe(12)
        s.add(User(
            username=rt.settings.admin_username.lower(), name="Administrator", role="admin",
            password_hash=hash_password(password), must_change_password=generated is not None,
        ))
    from core import audit

    audit.record(rt.engine, "system", "system", "user.bootstrap_admin", "success",
                 object_type="user", object_id=rt.settings.admin_username.lower())
    if generated and not os.environ.get("MEDSHIELD_QUIET_BOOTSTRAP"):
        print(
            "\n" + "=" * 64 + "\nMedShield first start: created administrator "
            f"'{rt.settings.admin_username.lower()}' with one-time password:\n\n    {generated}\n\n"
            "It is shown only now and must be changed at first login.\n" + "=" * 64 + "\n",
            file=sys.stderr, flush=True,
        )
    return generated
