"""Looks up the acting user's current role (None when disabled or gone)."""

from __future__ import annotations

from core.db.models import User
from core.runtime import get_runtime
from core.security import Actor


def current_actor_role(actor: Actor) -> str | None:
    with get_runtime().session() as s:
        user = s.get(User, actor.user_id)
        if user is None or not user.is_active or user.username != actor.username:
            return None
        return user.role
