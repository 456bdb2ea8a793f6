from datetime import date

import pandas as pd
import streamlit as st

from core.services import audit_log
from ui.navigation import guard
from ui.common import attempt

st.header("Audit log")
me = guard("audit")

c1, c2, c3, c4 = st.columns([2, 2, 1, 2])
username = c1.text_input("User", key="audit_user")
action = c2.text_input("Action starts with", key="audit_action", help="e.g. auth., image.upload, user.")
outcome = c3.selectbox("Outcome", ["any", "success", "failure", "denied"], key="audit_outcome")
dates = c4.date_input("Between", value=(), key="audit_dates")
filters = dict(username=username or None, action=action or None,
               outcome=None if outcome == "any" else outcome,
               date_from=dates[0] if len(dates) >= 1 else None,
               date_to=dates[1] if len(dates) == 2 else None)

rows = attempt(audit_log.search_events, me, **filters, limit=1000) or []
st.caption(f"{len(rows)} event(s) shown (newest first, at most 1,000)")
st.dataframe(pd.DataFrame([{"#": r.seq, "time (UTC)": r.ts.strftime("%Y-%m-%d %H:%M:%S"), "user": r.username,
                            "role": r.role, "action": r.action, "object": f"{r.object_type} {r.object_id}".strip(),
                            "outcome": r.outcome, "detail": r.detail} for r in rows]),
             hide_index=True, width="stretch")

a, b = st.columns(2)
if a.button("Prepare CSV export", width="stretch"):
    st.session_state["audit_csv"] = attempt(audit_log.export_csv, me, **filters)
if st.session_state.get("audit_csv"):
    a.download_button("Download CSV", st.session_state["audit_csv"], file_name=f"medshield-audit-{date.today()}.csv",
                      mime="text/csv", width="stretch")
if b.button("Verify hash chain", type="primary", width="stretch"):
    rep = attempt(audit_log.verify, me)
    if rep is not None:
        if rep.ok:
            st.success(f"Chain intact: {rep.checked} events verified.")
        else:
            st.error(f"Chain broken at event #{rep.first_bad_seq}: {rep.reason}.")
