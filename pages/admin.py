import pandas as pd
import streamlit as st

from core.errors import MedShieldError
from core.security import ROLES
from core.services import demo, keys, system, twofactor, users
from ui.navigation import guard
from ui.common import attempt, fmt_ts

st.header("Admin · users")
me = guard("admin")
if msg := st.session_state.pop("admin_flash", None):
    st.success(msg)
if secret := st.session_state.pop("admin_secret", None):
    st.warning(f"One-time password for **{secret[0]}** (shown once; they must change it at login): `{secret[1]}`")

demo_state = attempt(demo.demo_state, me)
sys_counts = (attempt(system.system_status, me) or None)
if demo_state is not None and demo_state.loaded:
    with st.expander("Demo data is loaded"):
        st.caption("A demo patient with four images (fake names, IDs and dates on public images).")
        if st.button("Remove demo data"):
            n = attempt(demo.remove_demo, me)
            if n is not None:
                st.session_state["admin_flash"] = f"Demo data removed ({n} image(s))."
                st.rerun()
elif sys_counts is not None and not sys_counts.counts.get("images"):
    st.info("No images yet. Load a small demo set to try the product at once: a demo patient with chest X-rays, "
            "a breast ultrasound and a CT slice carrying fake burned-in names, IDs and dates. Then create a "
            "technician to protect them and a doctor to restore and explain them.")
    if st.button("Load demo data", type="primary"):
        got = attempt(demo.load_demo, me)
        if got is not None:
            st.session_state["admin_flash"] = f"Demo patient loaded with {len(got.image_ids)} image(s)."
            st.rerun()

people = attempt(users.list_users, me) or []
st.dataframe(pd.DataFrame([{
    "user": u.username, "name": u.name, "role": u.role, "active": u.is_active,
    "locked": "until " + fmt_ts(u.locked_until) if u.is_locked else "", "failed": u.failed_attempts,
    "must change pw": u.must_change_password, "2FA": "on" if u.totp_enabled else "",
    "last login": fmt_ts(u.last_login_at),
} for u in people]), hide_index=True, width="stretch")

with st.expander("Create user", expanded=not people or len(people) == 1):
    with st.form("create_user", clear_on_submit=True):
        a, b, c = st.columns(3)
        username = a.text_input("User name")
        name = b.text_input("Full name")
        role = c.selectbox("Role", ROLES)
        email = st.text_input("E-mail (optional)")
        if st.form_submit_button("Create"):
            import secrets as _s
            temp = _s.token_urlsafe(12)
            try:
                u = users.create_user(me, username, name, role, temp, email)
            except MedShieldError as exc:
                st.error(str(exc))
            else:
                st.session_state["admin_secret"] = (u.username, temp)
                st.rerun()

if people:
    st.subheader("Manage a user")
    by_name = {u.username: u for u in people}
    pick = st.selectbox("User", list(by_name), key="admin_pick")
    u = by_name[pick]
    c1, c2, c3, c4, c5 = st.columns(5)
    if u.is_active:
        if c1.button("Disable", width="stretch", disabled=u.id == me.user_id):
            if attempt(users.set_active, me, u.id, False):
                st.session_state["admin_flash"] = f"{u.username} disabled."
                st.rerun()
    elif c1.button("Enable", width="stretch"):
        if attempt(users.set_active, me, u.id, True):
            st.session_state["admin_flash"] = f"{u.username} enabled."
            st.rerun()
    if c2.button("Unlock", width="stretch", disabled=not (u.is_locked or u.failed_attempts)):
        if attempt(users.unlock, me, u.id):
            st.session_state["admin_flash"] = f"{u.username} unlocked."
            st.rerun()
    if c3.button("Reset password", width="stretch"):
        temp = attempt(users.reset_password, me, u.id)
        if temp:
            st.session_state["admin_secret"] = (u.username, temp)
            st.rerun()
    if c5.button("Reset 2FA", width="stretch", disabled=not u.totp_enabled,
                 help="For a lost device: the user enrols again at next sign-in."):
        if attempt(twofactor.reset, me, u.id) is None:
            st.session_state["admin_flash"] = f"Two-factor sign-in reset for {u.username}."
            st.rerun()
    with c4:
        new_role = st.selectbox("Role", ROLES, index=ROLES.index(u.role), key=f"role_{u.id}",
                                label_visibility="collapsed", disabled=u.id == me.user_id)
        if new_role != u.role and st.button("Change role", width="stretch"):
            if attempt(users.set_role, me, u.id, new_role):
                st.session_state["admin_flash"] = f"{u.username} is now {new_role}."
                st.rerun()

st.subheader("Two-factor sign-in policy")
with st.form("tf_policy"):
    req = st.multiselect("Roles that must sign in with a second factor", ROLES, default=list(twofactor.required_roles()),
                         help="Users of these roles without a second factor are sent to enrol at sign-in and can do "
                              "nothing else until they have.")
    if st.form_submit_button("Save policy"):
        if attempt(twofactor.set_required_roles, me, req) is not None:
            st.session_state["admin_flash"] = "Two-factor policy saved: " + (", ".join(req) or "no role") + "."
            st.rerun()

st.subheader("Encryption keys")
status = attempt(keys.key_status, me)
if status:
    st.markdown(f"Master key `{status['current_key_id']}` protects **{status['images_sealed']}** image(s); "
                f"{status['images_on_older_key']} still on an older key."
                + (" The key comes from `MEDSHIELD_MASTER_KEY`." if status["from_environment"] else ""))
    if status["rotation_in_progress"]:
        st.warning("A rotation was interrupted: run it again to finish re-wrapping.")
    if st.button("Rotate master key", disabled=bool(status["from_environment"]),
                 help="Makes a new master key and re-wraps every image's data key; sealed pixels are not touched."):
        bar = st.progress(0.0, text="Re-wrapping data keys…")
        rep = attempt(keys.rotate_master_key, me,
                      lambda d, t: bar.progress(d / max(t, 1), text=f"{d}/{t} data keys re-wrapped"))
        if rep:
            st.session_state["admin_flash"] = f"New master key {rep.new_key_id}: {rep.rewrapped} data key(s) re-wrapped."
            st.rerun()

st.subheader("Triage thresholds")
from core.services import explain  # noqa: E402

t = explain.thresholds()
with st.form("triage"):
    a, b, c, d = st.columns(4)
    crit = a.number_input("Critical ≥", 0.0, 1.0, t.critical, 0.01)
    urg = b.number_input("Urgent ≥", 0.0, 1.0, t.urgent, 0.01)
    rout = c.number_input("Routine ≥", 0.0, 1.0, t.routine, 0.01)
    unc = d.number_input("Flag above (bits)", 0.01, 1.0, t.max_uncertainty, 0.01)
    if st.form_submit_button("Save thresholds"):
        if attempt(explain.set_thresholds, me, crit, urg, rout, unc, t.margin):
            st.session_state["admin_flash"] = "Triage thresholds saved."
            st.rerun()

from ui.pacs_admin import pacs_section  # noqa: E402

pacs_section(me)
