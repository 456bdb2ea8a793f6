"""Login gate: streamlit-authenticator draws the form and keeps the cookie; core checks the
password (bcrypt), the lockout and writes the audit events."""

from __future__ import annotations

import time

import streamlit as st
import streamlit_authenticator as stauth

from core.errors import AuthenticationFailed
from core.secrets import cookie_key
from core.security import Actor
from core.services import users
from core.services.users import UserInfo
from ui.common import runtime

COOKIE_NAME = "medshield_auth"


def _route_password_check_to_core(authenticator: stauth.Authenticate) -> None:
    """The library checks passwords against its credentials dict; we make core the only judge."""
    ctrl = authenticator.authentication_controller
    original = ctrl.login

    def login(username=None, password=None, *args, token=None, **kwargs):
        if token:
            return original(token=token)
        if not username or not password:
            st.session_state["login_error"] = "Enter your user name and password."
            return None
        try:
            info = users.authenticate(username, password)
        except AuthenticationFailed as exc:
            st.session_state["login_error"] = str(exc)
            st.session_state["authentication_status"] = False
            return False
        st.session_state.pop("login_error", None)
        original(token={"username": info.username})
        return bool(st.session_state.get("authentication_status"))

    ctrl.login = login


def _authenticator() -> stauth.Authenticate:
    settings = runtime().settings
    return stauth.Authenticate(
        users.login_directory(),  # a fresh dict each run: the library mutates it
        COOKIE_NAME,
        cookie_key(settings.secrets_dir),
        settings.cookie_expiry_days,
        auto_hash=False,
    )


def logout(authenticator: stauth.Authenticate | None, reason: str = "") -> None:
    username = st.session_state.get("username") or ""
    role = (st.session_state.get("roles") or [""])[0]
    if authenticator is not None:
        authenticator.logout(location="unrendered")
    if username:
        users.record_logout(username, role, reason)
    for key in ("actor", "last_seen", "requested_path"):
        st.session_state.pop(key, None)


def login_gate() -> UserInfo | None:
    """Return the signed-in user, or draw the login form and return None."""
    runtime()
    authenticator = _authenticator()
    _route_password_check_to_core(authenticator)
    st.session_state["_authenticator"] = authenticator
    if not st.session_state.get("authentication_status"):
        st.title("MedShield")
        st.caption("Secure medical-imaging workbench. Sign in with your hospital account.")
        if st.session_state.pop("idle_logout", False):
            st.info("You were signed out after a period of inactivity.")
    try:
        authenticator.login(location="main", fields={"Form name": "Sign in", "Login": "Sign in"},
                            key="login")
    except stauth.utilities.LoginError as exc:  # e.g. a cookie for a user no longer active
        st.error(str(exc))
    if not st.session_state.get("authentication_status"):
        if st.session_state.get("login_error") and st.session_state.get("authentication_status") is False:
            st.error(st.session_state["login_error"])
        return None

    info = users.session_user(st.session_state["username"])
    if info is None:  # disabled or locked since the cookie was issued
        logout(authenticator, "account no longer active")
        st.error("Your account is disabled or locked. Ask an administrator.")
        return None
    idle = runtime().settings.idle_timeout_minutes * 60
    now = time.time()
    last = st.session_state.get("last_seen")
    if last is not None and now - last > idle:
        logout(authenticator, "idle timeout")
        st.session_state["idle_logout"] = True
        st.rerun()
    st.session_state["last_seen"] = now
    st.session_state["actor"] = Actor(info.id, info.username, info.role)
    return info


def sidebar_account(info: UserInfo) -> None:
    with st.sidebar:
        st.markdown(f"**{info.name}**  \n`{info.username}` · {info.role}")
        st.button("Log out", key="logout_button", width="stretch", on_click=_logout_clicked)


def _logout_clicked() -> None:
    # A callback runs before the script, so the whole next run already sees the user signed out.
    logout(st.session_state.get("_authenticator"), "user")
