"""Which pages each role sees. core.security decides what each role may do; this only hides,
and `guard` stops a page drawn for a role it is not meant for (reloads, stale links)."""

from __future__ import annotations

import streamlit as st

from core.security import Actor

ROLE_PAGES: dict[str, list[str]] = {
    "technician": ["upload", "protect", "annotate", "patients", "pacs", "account"],
    "doctor": ["patients", "restore", "explain", "review", "annotate", "models", "metrics", "pacs", "account"],
    "admin": ["admin", "audit", "system", "models", "metrics", "account"],
}


def guard(page: str) -> Actor:
    """Return the acting user, or stop with a message when their role lacks this page."""
    from ui.common import actor

    me = actor()
    if page not in ROLE_PAGES.get(me.role, []):
        st.error("This page is not available for your role.")
        st.stop()
    return me
