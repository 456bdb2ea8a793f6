import pandas as pd
import plotly.express as px
import streamlit as st

from core.errors import MedShieldError
from core.services import datasets, models, projects, training
from ui.common import attempt, fmt_ts
from ui.navigation import guard

st.header("Models")
me = guard("models")
if msg := st.session_state.pop("models_flash", None):
    st.success(msg)
st.caption("Every version keeps its file checksum, training data, hyper-parameters, metrics and author. "
           "Deploying chooses the version inference uses; rolling back is deploying an older one.")

plist = attempt(projects.list_projects_for_training, me) or []
pmap = {f"#{p.id} · {p.name} ({p.task_type}, {p.model_task})": p for p in plist}
versions = attempt(models.list_models, me) or []

tab_versions, tab_train, tab_data = st.tabs(["Versions", "Train and evaluate", "Labelled data"])


KEY_FIGURES = ("auc", "acc", "sensitivity", "specificity", "f1", "dice", "hd95_px", "recall_iou50", "precision_iou50",
               "coverage_recall", "best_val_score")


def _flat(v) -> dict:
    """The headline figures: test split first, then held-out, then validation."""
    m: dict = {}
    for part in ("test", "heldout", "validation"):
        for k, val in (v.metrics.get(part) or {}).items():
            if k in KEY_FIGURES and isinstance(val, float) and k not in m:
                m[f"{part} {k}"] = val
    return m


with tab_versions:
    if not versions:
        st.info("No model is registered yet: shipped weights under models/ register at start-up.")
    for task in sorted({v.task for v in versions}):
        st.subheader(task)
        rows = [v for v in versions if v.task == task]
        st.dataframe(pd.DataFrame([{"id": v.id, "name": v.name, "version": v.version, "deployed": "✅" if v.deployed else "",
                                    "sha256": v.sha256[:16] + "…", "registered": fmt_ts(v.created_at),
                                    "metrics": ", ".join(f"{k} {val:.3f}" for k, val in _flat(v).items())[:160]}
                                   for v in rows]), hide_index=True, width="stretch")
        choices = {f"{v.name} {v.version} (#{v.id})": v for v in rows if not v.deployed}
        if choices:
            c1, c2 = st.columns([3, 1])
            pick = c1.selectbox("Version to deploy (or roll back to)", list(choices), key=f"deploy_{task}")
            if c2.button("Deploy", key=f"deploy_btn_{task}", width="stretch"):
                try:
                    datasets.deploy(me, choices[pick].id)
                except MedShieldError as exc:
                    st.error(str(exc))
                else:
                    st.session_state["models_flash"] = f"{pick} deployed for {task}."
                    st.rerun()
        hist = attempt(training.evaluation_history, me, task) or []
        if hist:
            df = pd.DataFrame([{"version": h["version"], "evaluated": h["at"][:16].replace("T", " "), "project": h["project"],
                                **{k: v for k, v in h["metrics"].items() if isinstance(v, (int, float)) and k != "n"}}
                               for h in hist])
            metric_cols = [c for c in ("auc", "acc", "f1", "dice", "precision", "recall") if c in df]
            if metric_cols:
                long = df.melt(id_vars=["version", "evaluated", "project"], value_vars=metric_cols, var_name="metric")
                st.plotly_chart(px.line(long, x="evaluated", y="value", color="metric", markers=True, hover_data=["version", "project"],
                                        title=f"{task}: evaluations across versions"), width="stretch", key=f"chart_{task}")

with tab_train:
    if not plist:
        st.info("No labelling project yet: a technician creates one on the Upload page.")
    else:
        with st.form("start_training"):
            pick = st.selectbox("Project", list(pmap))
            a, b, c, d = st.columns(4)
            epochs = a.number_input("Epochs", 1, 500, 5)
            size = b.number_input("Input size (px, 0 = default)", 0, 1024, 0, 16)
            batch = c.number_input("Batch", 2, 256, 16)
            arch = d.selectbox("Network", ["resnet18", "densenet121", "efficientnet-b0", "residual-unet", "unet",
                                           "attention-unet", "yolov8n"],
                               help="Classification: resnet18 / densenet121 / efficientnet-b0; segmentation: the U-Net "
                                    "variants; detection always trains YOLOv8n.")
            fine = st.checkbox("Fine-tune from the deployed version (transfer learning)", value=True)
            if st.form_submit_button("Start training", type="primary"):
                job = attempt(training.start_training, me, pmap[pick].id, int(epochs), fine, arch, int(size) or None, None, int(batch))
                if job:
                    st.session_state["models_flash"] = f"Training job #{job.id} queued."
                    st.rerun()
        if versions:
            with st.form("evaluate"):
                vpick = st.selectbox("Evaluate version", [f"{v.task} · {v.name} {v.version} (#{v.id})" for v in versions])
                ppick = st.selectbox("on the test split of", list(pmap), key="eval_project")
                if st.form_submit_button("Evaluate"):
                    vid = int(vpick.rsplit("(#", 1)[1].rstrip(")"))
                    job = attempt(training.start_evaluation, me, vid, pmap[ppick].id)
                    if job:
                        st.session_state["models_flash"] = f"Evaluation job #{job.id} queued."
                        st.rerun()

    @st.fragment(run_every=3)
    def jobs_panel() -> None:
        rows = attempt(training.list_training_jobs, me) or []
        if not rows:
            st.caption("No training or evaluation job yet.")
            return
        st.subheader("Jobs")
        for j in rows[:10]:
            with st.container(border=True):
                a, b = st.columns([4, 1])
                a.markdown(f"**#{j.id} {j.kind}** · `{j.model_task}` · {j.status} · {fmt_ts(j.created_at)}")
                if j.status in training.ACTIVE:
                    a.progress(min(1.0, j.progress), text=j.message or "waiting for a worker…")
                    if b.button("Cancel", key=f"cancel_{j.id}", disabled=j.status == "cancelling"):
                        attempt(training.cancel_job, me, j.id)
                        st.rerun()
                else:
                    a.caption(j.message)
                hist = [h for h in j.history if h.get("val_score") is not None]
                if len(hist) >= 2:
                    df = pd.DataFrame(hist)
                    st.plotly_chart(px.line(df, x="epoch", y=["train_loss", "val_score"], markers=True, height=220),
                                    width="stretch", key=f"job_chart_{j.id}_{len(hist)}")

    jobs_panel()

with tab_data:
    if me.role == "admin":
        st.info("Labelled images are for the clinical roles; admins see the projects' sizes only.")
        if plist:
            st.dataframe(pd.DataFrame([{"project": p.name, "task": p.task_type, "images": p.images, "labelled": p.labelled}
                                       for p in plist]), hide_index=True)
    elif plist:
        ppick = st.selectbox("Project", list(pmap), key="data_project")
        proj = pmap[ppick]
        counts = attempt(datasets.class_counts, me, proj.id) or {}
        if counts:
            df = pd.DataFrame([{"split": s, "class": c, "images": n} for s, cc in counts.items() for c, n in cc.items()])
            st.plotly_chart(px.bar(df, x="class", y="images", color="split", barmode="group", title="Images per split and class"),
                            width="stretch")
        with st.form("splits"):
            a, b, c, d = st.columns(4)
            tr = a.number_input("Train", 0.0, 1.0, 0.7, 0.05)
            va = b.number_input("Validation", 0.0, 1.0, 0.15, 0.05)
            te = c.number_input("Test", 0.0, 1.0, 0.15, 0.05)
            seed = d.number_input("Seed", 0, 10_000, 0)
            if st.form_submit_button("Assign stratified splits to unassigned images"):
                if attempt(datasets.assign_splits, me, (tr, va, te), int(seed), True, proj.id) is not None:
                    st.session_state["models_flash"] = "Splits assigned."
                    st.rerun()
        fmt = st.selectbox("Export labels as", datasets.EXPORT_FORMATS, key="export_fmt")
        if st.button("Prepare export"):
            st.session_state["label_export"] = attempt(datasets.export_labels, me, fmt, False, proj.id)
        if exp := st.session_state.get("label_export"):
            st.download_button(f"Download {exp[0]}", exp[1], exp[0])
    else:
        st.info("No labelling project yet.")
