import pandas as pd
import plotly.express as px
import streamlit as st

from core.services import keys, models, operations, protect, system
from ui.common import attempt, fmt_ts
from ui.navigation import guard

st.header("System")
me = guard("system")
DOT = {"green": ":green[●]", "amber": ":orange[●]", "red": ":red[●]"}


@st.fragment(run_every=5)
def live_health() -> None:
    got = attempt(operations.health, me)
    if got is None:
        return
    checks, workers = got
    cols = st.columns(len(checks))
    for col, c in zip(cols, checks):
        col.markdown(f"{DOT.get(c.state, '')} **{c.name}**  \n{c.detail}")
    if workers:
        st.dataframe(pd.DataFrame([{
            "state": {"green": "🟢 alive", "amber": "🟠 late", "red": "🔴 gone"}.get(w.state, w.state), "worker": w.name,
            "heartbeat": "—" if w.heartbeat_age_s is None else f"{w.heartbeat_age_s:.0f} s ago",
            "running": (f"{w.current_task} (job #{w.current_job_id})" if w.current_job_id else w.current_task) or "idle",
            "done": w.tasks_done, "failed": w.tasks_failed, "started": fmt_ts(w.started_at)} for w in workers]),
            hide_index=True, width="stretch")
    st.caption(f"Refreshed every 5 s · {pd.Timestamp.utcnow():%H:%M:%S} UTC")


st.subheader("Health")
live_health()


@st.fragment(run_every=5)
def live_jobs() -> None:
    if msg := st.session_state.pop("sys_flash", None):
        st.success(msg)
    status = st.selectbox("Jobs", ["all", "queued", "running", "cancelling", "finished", "finished_with_errors",
                                   "failed", "cancelled"], key="sys_job_status", label_visibility="collapsed")
    rows = attempt(operations.list_all_jobs, me, None if status == "all" else status, 200) or []
    if not rows:
        st.caption("No job yet.")
        return
    st.dataframe(pd.DataFrame([{
        "job": j.id, "kind": j.kind, "status": j.status, "progress": j.progress, "owner": j.owner,
        "created": fmt_ts(j.created_at), "duration": "" if j.duration_s is None else f"{j.duration_s:.0f} s",
        "error": j.error} for j in rows]), hide_index=True, width="stretch",
        column_config={"progress": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0)})
    pick, c1, c2 = st.columns([2, 1, 1], vertical_alignment="bottom")
    job_id = pick.selectbox("Job", [j.id for j in rows], key="sys_job_pick", format_func=lambda i: f"#{i}")
    chosen = next(j for j in rows if j.id == job_id)
    if c1.button("Cancel job", disabled=chosen.status not in operations.ACTIVE, width="stretch"):
        if (new := attempt(operations.cancel, me, job_id)) is not None:
            st.session_state["sys_flash"] = f"Job #{job_id}: {new}."
            st.rerun()
    if c2.button("Retry job", disabled=chosen.status not in operations.RETRYABLE, width="stretch"):
        if (runs := attempt(operations.retry, me, job_id)) is not None:
            st.session_state["sys_flash"] = f"Job #{job_id} queued again" + ("." if runs == job_id else f" as job #{runs}.")
            st.rerun()


st.subheader("Jobs")
live_jobs()

status = attempt(system.system_status, me)
if status is not None:
    st.subheader("Storage and database")
    a, b, c, d = st.columns(4)
    a.metric("Database", status.database.split(" ")[0])
    b.metric("Schema revision", status.schema_revision or "none")
    c.metric("Blob store", f"{status.blob_store_mb:,.1f} MB")
    d.metric("Images", status.counts.get("images", 0))
    st.caption(status.database)
    left, right = st.columns(2)
    left.dataframe(pd.DataFrame([{"what": k, "count": v} for k, v in status.counts.items()]), hide_index=True,
                   width="stretch")
    if status.images_by_status:
        right.plotly_chart(px.bar(x=list(status.images_by_status), y=list(status.images_by_status.values()),
                                  labels={"x": "status", "y": "images"}, title="Images by status"), width="stretch")

st.subheader("Protection over time")
rows = attempt(protect.protection_metrics, me, 5000) or []
regions = [{"day": pd.Timestamp(r.protected_at).date(), "modality": r.modality, **reg}
           for r in rows if r.protected_at for reg in (r.metrics or {}).get("regions", [])]
if regions:
    df = pd.DataFrame(regions).groupby(["day", "modality"], as_index=False)[["entropy_after", "npcr", "uaci"]].mean()
    cols = st.columns(3)
    for col, (metric, label) in zip(cols, [("entropy_after", "ciphertext entropy (bits/byte)"), ("npcr", "NPCR (%)"),
                                           ("uaci", "UACI (%)")]):
        col.plotly_chart(px.line(df, x="day", y=metric, color="modality", markers=True, title=label,
                                 labels={metric: label}), width="stretch")
else:
    st.caption("No protected image yet.")

st.subheader("Activity")
act = attempt(operations.activity, me, 30)
if act and act["events"]:
    days = sorted(set(act["events"]) | set(act["failed_sign_ins"]))
    df = pd.DataFrame({"day": days, "audit events": [act["events"].get(d, 0) for d in days],
                       "failed sign-ins": [act["failed_sign_ins"].get(d, 0) for d in days],
                       "refused actions": [act["denied"].get(d, 0) for d in days]})
    left, right = st.columns(2)
    left.plotly_chart(px.bar(df, x="day", y="audit events", title="Audit events per day"), width="stretch")
    right.plotly_chart(px.bar(df, x="day", y=["failed sign-ins", "refused actions"], barmode="group",
                              title="Failed sign-ins and refusals per day"), width="stretch")

st.subheader("Models in service")
ms = attempt(models.list_models, me) or []
if ms:
    st.dataframe(pd.DataFrame([{"task": m.task, "name": m.name, "version": m.version, "deployed": m.deployed,
                                "sha256": m.sha256[:16] + "…", "registered": fmt_ts(m.created_at)} for m in ms]),
                 hide_index=True, width="stretch")
    for m in [m for m in ms if m.deployed]:
        with st.expander(f"Model card · {m.task} · {m.name} {m.version}"):
            card = attempt(models.model_card, me, m.id)
            st.markdown(card or "_No model card beside these weights._")
else:
    st.caption("No model registered.")

ks = attempt(keys.key_status, me)
if ks:
    st.subheader("Keys")
    st.markdown(f"Master key `{ks['current_key_id']}` · {ks['images_sealed']} image(s) sealed · "
                f"{ks['images_on_older_key']} on an older key")
