from __future__ import annotations

from typing import Any, Callable, TypeVar

import streamlit as st

from core.errors import MedShieldError
from core.runtime import Runtime, get_runtime
from core.security import Actor

T = TypeVar("T")


@st.cache_resource(show_spinner=False)
def runtime() -> Runtime:
    """Settings, engine and store, created once per process (migrates and bootstraps)."""
    return get_runtime()


def actor() -> Actor:
    a = st.session_state.get("actor")
    if not isinstance(a, Actor):
        st.error("Your session has ended: log in again.")
        st.stop()
    return a


def attempt(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run a core service; show its refusal as a clear message instead of a traceback."""
    try:
        return fn(*args, **kwargs)
    except MedShieldError as exc:
        st.error(str(exc))
        return None


def fmt_ts(ts) -> str:
    return ts.strftime("%Y-%m-%d %H:%M") if ts else ""


def image_choices(me: Actor, status: str, empty_message: str) -> dict:
    """Label -> ImageInfo for images in `status` (newest first); stops the page when there are none."""
    from core.services import patients

    found = attempt(patients.list_images, me, status, None, 500) or []
    if not found:
        st.info(empty_message)
        st.stop()
    return {f"#{i.id} · {i.source_name[-40:]} · {i.modality} · {i.cols}x{i.rows}": i for i in found}
