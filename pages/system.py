import pandas as pd
import plotly.express as px
import streamlit as st

from core.services import keys, models, system
from ui.common import attempt, fmt_ts
from ui.navigation import guard

st.header("System")
me = guard("system")
status = attempt(system.system_status, me)
if status is None:
    st.stop()
a, b, c, d = st.columns(4)
a.metric("Database", status.database.split(" ")[0])
b.metric("Schema revision", status.schema_revision or "none")
c.metric("Queue", status.queue_backend)
d.metric("Tasks waiting", "?" if status.queue_pending is None else status.queue_pending)
st.caption(status.database)

left, right = st.columns(2)
left.dataframe(pd.DataFrame([{"what": k, "count": v} for k, v in status.counts.items()]), hide_index=True, width="stretch")
if status.images_by_status:
    right.plotly_chart(px.bar(x=list(status.images_by_status), y=list(status.images_by_status.values()),
                              labels={"x": "status", "y": "images"}, title="Images by status"), width="stretch")
st.metric("Blob store", f"{status.blob_store_mb:,.1f} MB")
if status.jobs_by_status:
    st.markdown("**Jobs:** " + ", ".join(f"{k}: {v}" for k, v in status.jobs_by_status.items()))

st.subheader("Models")
ms = attempt(models.list_models, me) or []
if ms:
    st.dataframe(pd.DataFrame([{"task": m.task, "name": m.name, "version": m.version, "deployed": m.deployed,
                                "sha256": m.sha256[:16] + "…", "registered": fmt_ts(m.created_at),
                                "recall": (m.metrics.get("heldout") or {}).get("recall_iou50"),
                                "precision": (m.metrics.get("heldout") or {}).get("precision_iou50")} for m in ms]),
                 hide_index=True, width="stretch")
else:
    st.caption("No model registered.")

ks = attempt(keys.key_status, me)
if ks:
    st.subheader("Keys")
    st.markdown(f"Master key `{ks['current_key_id']}` · {ks['images_sealed']} image(s) sealed · "
                f"{ks['images_on_older_key']} on an older key")
