import pandas as pd
import streamlit as st

from core.errors import MedShieldError
from core.services import account, users
from ui.navigation import guard
from ui.common import attempt, fmt_ts

st.header("My account")
me = guard("account")
if msg := st.session_state.pop("account_flash", None):
    st.success(msg)

with st.form("change_password", clear_on_submit=True):
    st.subheader("Change password")
    old = st.text_input("Current password", type="password")
    new = st.text_input("New password", type="password", help="At least 8 characters.")
    again = st.text_input("Repeat new password", type="password")
    if st.form_submit_button("Change password"):
        if new != again:
            st.error("The two new passwords differ.")
        else:
            try:
                users.change_own_password(me, old, new)
            except MedShieldError as exc:
                st.error(str(exc))
            else:
                st.session_state["account_flash"] = "Password changed."
                st.rerun()

with st.expander("Receive shared images: make a key pair"):
    st.caption("Colleagues can send you protected images as share packages wrapped to your public "
               "key. Your private key is shown once here and never stored by MedShield.")
    if st.button("Generate key pair"):
        from core.crypto.share import generate_keypair

        st.session_state["my_keypair"] = generate_keypair()
    if pair := st.session_state.pop("my_keypair", None):
        st.code(pair[1], language=None)
        st.download_button("Download private key (once)", pair[0] + "\n", "medshield-private.key")
        st.warning("Save the private key now: it is not shown again.")

st.subheader("My recent activity")
rows = attempt(account.my_history, me, 100) or []
if rows:
    st.dataframe(pd.DataFrame([{"time": fmt_ts(r.ts), "action": r.action,
                                "object": f"{r.object_type} {r.object_id}".strip(), "outcome": r.outcome}
                               for r in rows]), hide_index=True, width="stretch")
else:
    st.caption("No activity yet.")
