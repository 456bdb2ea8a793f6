"""Login gate. streamlit-authenticator keeps the session state and reads the signed re-login
cookie; core checks the password (bcrypt) and the lockout and writes the audit events. Our own
form submits in a callback, because the library's form loses submissions when its cookie
component reruns the script on a fresh server."""

from __future__ import annotations

import json
import time

import streamlit as st
import streamlit_authenticator as stauth

from core.errors import AccountLocked, AuthenticationFailed
from core.secrets import cookie_key
from core.security import Actor
from core.services import twofactor, users
from core.services.users import UserInfo
from ui.common import runtime

COOKIE_NAME = "medshield_auth"
PENDING_SECONDS = 300  # the second step must follow the password within this long


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
    if authenticator is not None and st.session_state.get("authentication_status"):
        authenticator.authentication_controller.logout()  # clears the session's login
    st.session_state.pop("auth_token", None)
    if username:
        users.record_logout(username, role, reason)
    for key in ("actor", "last_seen", "requested_path"):
        st.session_state.pop(key, None)


def login_gate() -> UserInfo | None:
    """Return the signed-in user (from this session or the login cookie), else None.

    streamlit-authenticator keeps the session and the re-login cookie; the password check, the
    lockout and the audit are core's (`users.authenticate`). Cookie writes and deletes happen in
    a normal script run, never in a callback or a run that is rerun at once."""
    runtime()
    authenticator = _authenticator()
    st.session_state["_authenticator"] = authenticator
    try:
        authenticator.login(location="unrendered")  # signs in from a valid cookie, draws nothing
    except stauth.utilities.LoginError as exc:  # e.g. a cookie for a user no longer active
        st.session_state["login_error"] = str(exc)
    if not st.session_state.get("authentication_status"):
        return None
    if token := st.session_state.get("auth_token"):
        _write_cookie(token, int(runtime().settings.cookie_expiry_days * 86400))
    return _current_user(authenticator)


def _write_cookie(value: str, max_age: int) -> None:
    """Write (or, with max_age 0, delete) the re-login cookie. The snippet is the same on every
    run (idempotent), so a rerun that replaces the page can never swallow the write."""
    cookie = f"{COOKIE_NAME}={value}; Max-Age={max_age}; Path=/; SameSite=Strict"
    st.html(f"<script>document.cookie = {json.dumps(cookie)};</script>", unsafe_allow_javascript=True)


def _submit_login() -> None:
    """Form callback: runs before the script, so a rerun cannot swallow the submission."""
    username = st.session_state.get("login_username", "")
    password = st.session_state.get("login_password", "")
    st.session_state["login_password"] = ""
    if not username or not password:
        st.session_state["login_error"] = "Enter your user name and password."
        return
    try:
        info = users.authenticate(username, password)
    except AuthenticationFailed as exc:
        st.session_state["login_error"] = str(exc)
        st.session_state["authentication_status"] = False
        return
    if info.totp_enabled:  # the password was right: now the second factor, within a few minutes
        st.session_state["pending_2fa"] = (info.username, time.time())
        return
    _signed_in(info)


def _submit_code() -> None:
    """Second step: a code from the authenticator app, or a recovery code."""
    pending = st.session_state.get("pending_2fa")
    code = st.session_state.get("login_code", "")
    st.session_state["login_code"] = ""
    if not pending or time.time() - pending[1] > PENDING_SECONDS:
        st.session_state.pop("pending_2fa", None)
        st.session_state["login_error"] = "That took too long: sign in again."
        return
    try:
        info = twofactor.verify(pending[0], code)
    except AuthenticationFailed as exc:
        st.session_state["login_error"] = str(exc)
        if isinstance(exc, AccountLocked):
            st.session_state.pop("pending_2fa", None)
        return
    st.session_state.pop("pending_2fa", None)
    _signed_in(info)


def _cancel_code() -> None:
    st.session_state.pop("pending_2fa", None)


def _signed_in(info: UserInfo) -> None:
    authenticator = st.session_state["_authenticator"]
    authenticator.authentication_controller.login(token={"username": info.username})
    st.session_state["logout"] = None
    st.session_state["last_seen"] = time.time()
    model = authenticator.cookie_controller.cookie_model
    model.exp_date = model._set_exp_date()
    st.session_state["auth_token"] = model._token_encode()  # signed (HS256) with the cookie key


def _current_user(authenticator) -> UserInfo | None:
    info = users.session_user(st.session_state["username"])
    if info is None:  # disabled or locked since the cookie was issued
        logout(authenticator, "account no longer active")
        st.session_state["login_error"] = "Your account is disabled or locked. Ask an administrator."
        return None
    idle = runtime().settings.idle_timeout_minutes * 60
    now = time.time()
    last = st.session_state.get("last_seen")
    if last is not None and now - last > idle:
        logout(authenticator, "idle timeout")
        st.session_state["idle_logout"] = True
        return None
    st.session_state["last_seen"] = now
    st.session_state["actor"] = Actor(info.id, info.username, info.role)
    return info


def login_page() -> None:
    """The sign-in page (drawn inside st.navigation, so its widgets keep one identity)."""
    if st.session_state.get("logout"):
        _write_cookie("", 0)  # signed out in this browser: drop the re-login cookie
    st.title("MedShield")
    st.caption("Secure medical-imaging workbench. Sign in with your hospital account.")
    if st.session_state.pop("idle_logout", False):
        st.info("You were signed out after a period of inactivity.")
    pending = st.session_state.get("pending_2fa")
    if pending and time.time() - pending[1] <= PENDING_SECONDS:
        with st.form("login_2fa"):
            st.subheader("Two-factor sign-in")
            st.caption(f"Signed in as **{pending[0]}** with your password. Type the 6-digit code your "
                       "authenticator app shows, or one of your recovery codes.")
            st.text_input("Authentication code", key="login_code", autocomplete="one-time-code", max_chars=11)
            st.form_submit_button("Verify", type="primary", on_click=_submit_code)
        st.button("Use another account", on_click=_cancel_code)
    else:
        with st.form("login"):
            st.subheader("Sign in")
            st.text_input("Username", key="login_username", autocomplete="username")
            st.text_input("Password", type="password", key="login_password", autocomplete="current-password")
            st.form_submit_button("Sign in", type="primary", on_click=_submit_login)
    if err := st.session_state.pop("login_error", None):
        st.error(err)


def sidebar_account(info: UserInfo) -> None:
    with st.sidebar:
        st.markdown(f"**{info.name}**  \n`{info.username}` · {info.role}")
        st.button("Log out", key="logout_button", width="stretch", on_click=_logout_clicked)


def _logout_clicked() -> None:
    # A callback runs before the script, so the whole next run already sees the user signed out.
    logout(st.session_state.get("_authenticator"), "user")


def required_2fa_roles() -> tuple[str, ...]:
    return twofactor.required_roles()
