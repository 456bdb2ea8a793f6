import pandas as pd
import streamlit as st

from core.errors import MedShieldError
from core.services import account, twofactor, users
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

st.subheader("Two-factor sign-in")
tf = attempt(twofactor.status, me) or {}
if codes := st.session_state.pop("recovery_codes", None):
    st.success("Two-factor sign-in is on. Keep these recovery codes somewhere safe: each works once, "
               "instead of a code, if you lose your device. They are shown only now.")
    st.code("\n".join(codes), language=None)
    st.download_button("Download recovery codes", "\n".join(codes) + "\n", "medshield-recovery-codes.txt")
if tf.get("enabled"):
    st.markdown(f"On since {fmt_ts(tf.get('enabled_at'))} · **{tf.get('recovery_codes_left', 0)}** recovery code(s) left.")
    c1, c2 = st.columns(2)
    with c1.form("tf_codes", clear_on_submit=True):
        st.caption("New recovery codes (the old ones stop working)")
        code = st.text_input("Current code", max_chars=6, key="tf_codes_code")
        if st.form_submit_button("Make new recovery codes"):
            got = attempt(twofactor.new_recovery_codes, me, code)
            if got:
                st.session_state["recovery_codes"] = got
                st.rerun()
    with c2.form("tf_disable", clear_on_submit=True):
        st.caption("Turn two-factor sign-in off" + (" (your role requires it: you will have to enrol again)"
                                                     if tf.get("required") else ""))
        pw = st.text_input("Password", type="password", key="tf_disable_pw")
        code = st.text_input("Current code or a recovery code", max_chars=11, key="tf_disable_code")
        if st.form_submit_button("Turn off"):
            try:
                twofactor.disable(me, pw, code)
            except MedShieldError as exc:
                st.error(str(exc))
            else:
                st.session_state["account_flash"] = "Two-factor sign-in is off."
                st.rerun()
else:
    if tf.get("required"):
        st.info("Your role requires a second factor at sign-in.")
    st.caption("Use an authenticator app (FreeOTP, Google Authenticator, Aegis…): after your password, "
               "sign-in asks for the 6-digit code it shows.")
    if st.button("Set up two-factor sign-in", type="primary" if tf.get("required") else "secondary"):
        st.session_state["enrolment"] = attempt(twofactor.begin_enrolment, me)
    if enrol := st.session_state.get("enrolment"):
        q, t = st.columns([1, 2])
        q.image(enrol.qr_png, caption="Scan with your app", width=220)
        t.markdown("Or type this key into the app:")
        t.code(" ".join(enrol.secret[i:i + 4] for i in range(0, len(enrol.secret), 4)), language=None)
        with t.form("tf_confirm", clear_on_submit=True):
            code = st.text_input("Code from the app", max_chars=6, key="tf_confirm_code")
            if st.form_submit_button("Turn on", type="primary"):
                got = attempt(twofactor.confirm_enrolment, me, code)
                if got:
                    st.session_state.pop("enrolment", None)
                    st.session_state["recovery_codes"] = got
                    st.rerun()

with st.expander("Receive shared images: make a key pair"):
    st.caption("Colleagues can send you protected images as share packages wrapped to your public "
               "key. Your private key is shown once here and never stored by MedShield.")
    if st.button("Generate key pair"):
        st.session_state["my_keypair"] = attempt(account.share_keypair, me)
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
