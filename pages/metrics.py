import pandas as pd
import plotly.express as px
import streamlit as st

from core.services import protect
from ui.common import attempt, fmt_ts
from ui.navigation import guard

st.header("Metrics")
me = guard("metrics")
st.caption("How well protected images are sealed and how much of each image stays usable. "
           "Figures only: no pixels and no patient data.")

rows = attempt(protect.protection_metrics, me, 1000) or []
if not rows:
    st.info("No protected image yet.")
    st.stop()

regions, images, timings = [], [], []
for r in rows:
    m = r.metrics
    for reg in m.get("regions", []):
        regions.append({"image": r.image_id, "modality": r.modality, **reg})
    fid = m.get("fidelity", {})
    images.append({"image": r.image_id, "modality": r.modality, "size": f"{r.cols}x{r.rows}",
                   "regions": m.get("detections", {}).get("count", 0), "psnr_db": fid.get("psnr_db"),
                   "ssim": fid.get("ssim"), "phash_distance": fid.get("phash_distance"),
                   "mask": m.get("mask"), "protected": fmt_ts(r.protected_at)})
    for stage, ms in (m.get("timings_ms") or {}).items():
        timings.append({"image": r.image_id, "stage": stage, "ms": ms})
reg_df, img_df, t_df = pd.DataFrame(regions), pd.DataFrame(images), pd.DataFrame(timings)

a, b, c, d = st.columns(4)
a.metric("Protected images", len(img_df))
b.metric("Sealed regions", len(reg_df))
if len(reg_df):
    c.metric("Regions passing NPCR/UACI", f"{reg_df['passes'].mean() * 100:.0f}%",
             help="Each test is at α = 0.05, so even an ideal cipher fails about 5% of regions per test by chance.")
    d.metric("Ciphertext entropy", f"{reg_df['entropy_after'].mean():.3f} bits/byte")

if len(reg_df):
    left, right = st.columns(2)
    fig = px.scatter(reg_df, x="entropy_before", y="entropy_after", color="modality", hover_data=["image", "index", "nbytes"],
                     title="Region entropy before and after sealing", labels={"entropy_before": "before (bits/value)",
                                                                              "entropy_after": "after (bits/byte)"})
    left.plotly_chart(fig, width="stretch")
    fig = px.scatter(reg_df, x="nbytes", y="npcr", color="passes", log_x=True, hover_data=["image", "index", "uaci"],
                     title="NPCR between two sealings (fresh nonces) vs the critical value",
                     labels={"nbytes": "region size (bytes)", "npcr": "NPCR (%)"})
    fig.add_scatter(x=reg_df["nbytes"], y=reg_df["npcr_critical"], mode="markers", name="critical (α=0.05)",
                    marker={"symbol": "line-ew-open", "size": 14})
    right.plotly_chart(fig, width="stretch")
    left, right = st.columns(2)
    fig = px.scatter(reg_df, x="nbytes", y="uaci", color="passes", log_x=True, title="UACI vs its critical interval",
                     labels={"nbytes": "region size (bytes)", "uaci": "UACI (%)"})
    fig.add_scatter(x=reg_df["nbytes"], y=reg_df["uaci_low"], mode="markers", name="interval low",
                    marker={"symbol": "line-ew-open", "size": 14})
    fig.add_scatter(x=reg_df["nbytes"], y=reg_df["uaci_high"], mode="markers", name="interval high",
                    marker={"symbol": "line-ew-open", "size": 14})
    left.plotly_chart(fig, width="stretch")
    fig = px.scatter(reg_df, x="corr_before", y="corr_after", color="modality",
                     title="Adjacent-pixel correlation before and after", range_y=[-1, 1])
    right.plotly_chart(fig, width="stretch")

left, right = st.columns(2)
fig = px.scatter(img_df, x="psnr_db", y="ssim", size="regions", color="modality", hover_data=["image", "phash_distance"],
                 title="Protected vs original: PSNR and SSIM (512-px view)")
left.plotly_chart(fig, width="stretch")
if len(t_df):
    right.plotly_chart(px.box(t_df, x="stage", y="ms", points="all", title="Time per stage (ms)"), width="stretch")
st.dataframe(img_df, hide_index=True, width="stretch")
