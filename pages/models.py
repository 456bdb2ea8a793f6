import pandas as pd
import plotly.express as px
import streamlit as st

from core.services import datasets, models
from ui.common import attempt, fmt_ts
from ui.navigation import guard

st.header("Models")
me = guard("models")
if msg := st.session_state.pop("models_flash", None):
    st.success(msg)
st.caption("Every version keeps its file checksum, training command, data and metrics. Deploying "
           "chooses the version inference uses; rolling back is deploying an older one.")

versions = attempt(models.list_models, me) or []
if not versions:
    st.info("No model is registered yet: shipped weights under models/ register at start-up.")
for task in sorted({v.task for v in versions}):
    st.subheader(task)
    rows = [v for v in versions if v.task == task]
    st.dataframe(pd.DataFrame([{"id": v.id, "name": v.name, "version": v.version, "deployed": v.deployed,
                                "sha256": v.sha256[:16] + "…", "registered": fmt_ts(v.created_at),
                                "metrics": ", ".join(f"{k}={val:.3f}" for k, val in _flat.items() if isinstance(val, float))[:120]}
                               for v in rows for _flat in [{**{k: val for k, val in v.metrics.items() if isinstance(val, float)},
                                                            **(v.metrics.get("heldout") or {}), **(v.metrics.get("test") or {})}]]),
                 hide_index=True, width="stretch")
    choices = {f"{v.name} {v.version} (#{v.id})": v for v in rows if not v.deployed}
    if choices:
        c1, c2 = st.columns([3, 1])
        pick = c1.selectbox("Version to deploy", list(choices), key=f"deploy_{task}")
        if c2.button("Deploy", key=f"deploy_btn_{task}", width="stretch"):
            from core.errors import MedShieldError

            try:
                datasets.deploy(me, choices[pick].id)
            except MedShieldError as exc:
                st.error(str(exc))
            else:
                st.session_state["models_flash"] = f"{pick} deployed for {task}."
                st.rerun()

if me.role != "admin":
    st.divider()
    st.subheader("Labelled data")
    counts = attempt(datasets.class_counts, me) or {}
    if counts:
        df = pd.DataFrame([{"split": s, "class": c, "images": n} for s, cc in counts.items() for c, n in cc.items()])
        st.plotly_chart(px.bar(df, x="class", y="images", color="split", barmode="group", title="Class counts per split"),
                        width="stretch")
    with st.form("splits"):
        a, b, c, d = st.columns(4)
        tr = a.number_input("Train", 0.0, 1.0, 0.7, 0.05)
        va = b.number_input("Validation", 0.0, 1.0, 0.15, 0.05)
        te = c.number_input("Test", 0.0, 1.0, 0.15, 0.05)
        seed = d.number_input("Seed", 0, 10_000, 0)
        if st.form_submit_button("Assign stratified splits to unassigned images"):
            if attempt(datasets.assign_splits, me, (tr, va, te), int(seed)) is not None:
                st.session_state["models_flash"] = "Splits assigned."
                st.rerun()
    fmt = st.selectbox("Export labels as", datasets.EXPORT_FORMATS, key="export_fmt")
    if st.button("Prepare export"):
        st.session_state["label_export"] = attempt(datasets.export_labels, me, fmt)
    if exp := st.session_state.get("label_export"):
        st.download_button(f"Download {exp[0]}", exp[1], exp[0])
