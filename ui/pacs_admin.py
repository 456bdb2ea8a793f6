"""The Admin page's PACS section: nodes, their last connection test, add / change / test / remove."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import MedShieldError
from core.security import Actor
from core.services import pacs_nodes
from ui.common import attempt, fmt_ts


def pacs_section(me: Actor) -> None:
    st.subheader("PACS")
    nodes = attempt(pacs_nodes.list_nodes, me) or []
    if msg := st.session_state.pop("pacs_admin_flash", None):
        st.success(msg)
    if nodes:
        st.dataframe(pd.DataFrame([{
            "name": n.name, "kind": n.kind, "address": n.where, "auth": n.auth if n.kind == "dicomweb" else "AE titles",
            "calling AE": n.calling_ae if n.kind == "dimse" else "",
            "last test": ("✅ " if n.last_test_ok else "❌ " if n.last_test_ok is False else "") + fmt_ts(n.last_test_at),
            "result": n.last_test_message, "from env": "yes" if n.from_env else ""} for n in nodes]),
            hide_index=True, width="stretch")
        pick, c1, c2 = st.columns([2, 1, 1], vertical_alignment="bottom")
        by_name = {n.name: n for n in nodes}
        chosen = by_name[pick.selectbox("PACS node", list(by_name), key="pacs_admin_pick")]
        if c1.button("Test connection", width="stretch"):
            if (ok := attempt(pacs_nodes.test_node, me, chosen.id)) is not None:
                st.session_state["pacs_admin_flash"] = f"{chosen.name}: {ok}"
                st.rerun()
        if c2.button("Remove node", disabled=chosen.from_env, width="stretch"):
            try:
                pacs_nodes.delete_node(me, chosen.id)
            except MedShieldError as exc:
                st.error(str(exc))
            else:
                st.session_state["pacs_admin_flash"] = f"{chosen.name} removed."
                st.rerun()
    else:
        st.caption("No PACS yet. Add one below, or set MEDSHIELD_PACS_URL (see the README).")
    with st.expander("Add a PACS node", expanded=not nodes):
        kind = st.radio("Kind", ["dicomweb", "dimse"], horizontal=True, key="pacs_new_kind",
                        format_func=lambda k: {"dicomweb": "DICOMweb (QIDO/WADO/STOW-RS)",
                                               "dimse": "DIMSE (C-FIND/C-GET/C-STORE)"}[k])
        with st.form("pacs_new", clear_on_submit=True):
            name = st.text_input("Name", placeholder="Main PACS")
            url = auth = user = secret = ae = host = ""
            port, calling = 104, "MEDSHIELD"
            if kind == "dicomweb":
                url = st.text_input("Base URL", placeholder="https://pacs.example.org/dicom-web")
                auth = st.selectbox("Authentication", ["none", "basic", "bearer"])
                user = st.text_input("User name (basic)")
                secret = st.text_input("Password or token", type="password",
                                       help="Stored encrypted with the master key; never shown again.")
            else:
                ae = st.text_input("Called AE title", placeholder="ORTHANC")
                host = st.text_input("Host", placeholder="10.0.0.5")
                port = st.number_input("Port", 1, 65535, 104)
                calling = st.text_input("Our calling AE title", "MEDSHIELD")
            timeout = st.number_input("Timeout (s)", 0.5, 600.0, 15.0)
            if st.form_submit_button("Add node"):
                got = attempt(pacs_nodes.save_node, me, name, kind, url=url, auth=auth or "none", username=user,
                              secret=secret, ae_title=ae, host=host, port=int(port), calling_ae=calling,
                              timeout_s=float(timeout))
                if got is not None:
                    st.session_state["pacs_admin_flash"] = f"{got.name} added: test its connection above."
                    st.rerun()
