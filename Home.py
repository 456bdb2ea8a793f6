"""MedShield entry point: sign in, then the pages of the user's role (st.navigation)."""

from pathlib import Path
from urllib.parse import urlparse

import streamlit as st

st.set_page_config(page_title="MedShield", page_icon=str(Path(__file__).parent / "assets" / "favicon.png"),
                   layout="wide")

from ui import auth  # noqa: E402
from ui.navigation import ROLE_PAGES  # noqa: E402

PAGES = {
    "upload": st.Page("pages/upload.py", title="Upload", icon=":material/upload:", url_path="upload"),
    "protect": st.Page("pages/protect.py", title="Protect", icon=":material/shield:", url_path="protect"),
    "patients": st.Page("pages/patients.py", title="Patients", icon=":material/groups:", url_path="patients"),
    "restore": st.Page("pages/restore.py", title="Restore", icon=":material/lock_open:", url_path="restore"),
    "annotate": st.Page("pages/annotate.py", title="Annotate", icon=":material/draw:", url_path="annotate"),
    "explain": st.Page("pages/explain.py", title="Explain", icon=":material/insights:", url_path="explain"),
    "review": st.Page("pages/review.py", title="Review", icon=":material/rule:", url_path="review"),
    "models": st.Page("pages/models.py", title="Models", icon=":material/model_training:", url_path="models"),
    "metrics": st.Page("pages/metrics.py", title="Metrics", icon=":material/monitoring:", url_path="metrics"),
    "admin": st.Page("pages/admin.py", title="Admin", icon=":material/manage_accounts:", url_path="admin"),
    "system": st.Page("pages/system.py", title="System", icon=":material/dns:", url_path="system"),
    "pacs": st.Page("pages/pacs.py", title="PACS", icon=":material/cloud_sync:", url_path="pacs"),
    "audit": st.Page("pages/audit.py", title="Audit", icon=":material/fact_check:", url_path="audit"),
    "account": st.Page("pages/account.py", title="My account", icon=":material/person:", url_path="account"),
}


if "requested_path" not in st.session_state:  # a deep link or reload: remember where to go
    try:
        st.session_state["requested_path"] = urlparse(st.context.url or "").path.strip("/").rsplit("/", 1)[-1]
    except Exception:  # st.context.url is absent outside a browser session
        st.session_state["requested_path"] = ""

user = auth.login_gate()
if user is None:
    st.navigation([st.Page(auth.login_page, title="Sign in", url_path="signin")], position="hidden").run()
    st.stop()

auth.sidebar_account(user)
if user.must_change_password:
    st.warning("Choose a new password before you continue.")
    st.navigation([PAGES["account"]]).run()
    st.stop()

if user.role in auth.required_2fa_roles() and not user.totp_enabled:
    st.warning("Your role signs in with a second factor: set up two-factor sign-in below before you continue.")
    st.navigation([PAGES["account"]]).run()
    st.stop()

keys = ROLE_PAGES.get(user.role, ["account"])
nav = st.navigation([PAGES[k] for k in keys])
wanted = st.session_state.get("requested_path", "")
if auth.COOKIE_NAME in st.context.cookies:
    st.session_state.pop("requested_path", None)
    if wanted in keys and nav.url_path != wanted:
        st.switch_page(PAGES[wanted])
nav.run()
