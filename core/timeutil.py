from __future__ import annotations

from datetime import datetime, timezone


def as_utc(ts: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything we store is UTC."""
    if ts is None:
        return None
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)
