import pandas as pd
import streamlit as st

from core.services import explain
from ui.common import attempt, fmt_ts
from ui.navigation import guard

st.header("Review")
me = guard("review")
if msg := st.session_state.pop("review_flash", None):
    st.success(msg)
st.caption("AI results waiting for a doctor, flagged and most urgent first. Approvals and corrections "
           "become training labels.")

queue = attempt(explain.review_queue, me) or []
if queue:
    st.dataframe(pd.DataFrame([{"result": r.id, "image": r.image_id, "prediction": r.prediction, "triage": r.triage,
                                "flag": "⚑" if r.flagged else "", "uncertainty": round(r.uncertainty or 0, 3),
                                "model": r.model, "when": fmt_ts(r.created_at)} for r in queue]),
                 hide_index=True, width="stretch")
    by_label = {f"#{r.id} · image {r.image_id} · {r.prediction} · {r.triage}": r for r in queue}
    r = by_label[st.selectbox("Result", list(by_label), key="review_pick")]
    st.json(r.probabilities, expanded=False)
    with st.form("review_form", clear_on_submit=True):
        decision = st.radio("Decision", ["approved", "rejected", "corrected"], horizontal=True)
        label = st.text_input("Correct label (for a correction)", value="")
        comment = st.text_area("Comment")
        if st.form_submit_button("Save review", type="primary"):
            done = attempt(explain.review, me, r.id, decision, label or None, comment)
            if done:
                st.session_state["review_flash"] = f"Result #{r.id} {decision}."
                st.rerun()
else:
    st.info("Nothing waits for review.")

st.subheader("History and export")
hist = attempt(explain.results, me) or []
if hist:
    st.dataframe(pd.DataFrame([{"result": h.id, "image": h.image_id, "prediction": h.prediction, "review": h.review_status,
                                "label": h.corrected_label or "", "comment": h.review_comment[:60],
                                "reviewed": fmt_ts(h.reviewed_at)} for h in hist]), hide_index=True, width="stretch")
    a, b = st.columns(2)
    if a.button("Prepare CSV and JSON export"):
        st.session_state["ai_export"] = (attempt(explain.export, me, "csv"), attempt(explain.export, me, "json"))
    if exp := st.session_state.get("ai_export"):
        a.download_button("Download CSV", exp[0] or "", "ai-results.csv", "text/csv")
        b.download_button("Download JSON", exp[1] or "", "ai-results.json", "application/json")
