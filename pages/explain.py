import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from core.errors import MedShieldError, NotFound
from core.ml.cam import METHODS
from core import jobs
from core.services import explain, patients
from ui.common import attempt
from ui.navigation import guard

st.header("Explain")
me = guard("explain")
st.caption("Runs the deployed classifier with Monte Carlo dropout, then shows where it looked. "
           "Decision support only: a clinician makes the diagnosis.")

images = attempt(patients.list_images, me, None, None, 500) or []
if not images:
    st.info("No image yet.")
    st.stop()
labels = {f"#{i.id} · {i.source_name[-40:]} · {i.modality} · {i.status}": i for i in images}
info = labels[st.selectbox("Image", list(labels), key="explain_pick")]
tasks = attempt(explain.classifier_tasks, me) or []
c0, c1, c2 = st.columns([2, 2, 2])
auto = "automatic (by modality)"
task_pick = c0.selectbox("Classifier", [auto] + tasks, key="explain_task",
                         help="Ultrasound images go to the breast-ultrasound model, others to the chest X-ray model.")
task = None if task_pick == auto else task_pick
passes = c1.slider("Monte Carlo passes", 0, 30, 10, key="explain_passes")
restored = c2.checkbox("Use the restored original (audited)", key="explain_restored",
                       disabled=info.status != "protected")
ensemble = c2.checkbox("Ensemble of versions", key="explain_ensemble",
                       help="The other versions of this classifier (same classes) add their passes: their disagreement "
                            "shows in the model part of the uncertainty.")

with st.expander("Batch analysis on the queue"):
    st.caption("Runs the classifier over many images in the background; results land in the Review queue.")
    pick_many = st.multiselect("Images", list(labels), key="batch_images")
    if st.button("Analyze selected", disabled=not pick_many):
        job = attempt(jobs.enqueue_analyze, me, [labels[k].id for k in pick_many], task, passes)
        if job:
            st.session_state["batch_job"] = job.id

    @st.fragment(run_every=2)
    def batch_progress() -> None:
        job_id = st.session_state.get("batch_job")
        if not job_id:
            return
        info_job = attempt(jobs.get_job, me, job_id)
        if info_job:
            st.progress(info_job.progress, text=f"job #{info_job.id}: {info_job.done + info_job.failed}/{info_job.total} "
                                                  f"{info_job.status} {info_job.message}")

    batch_progress()

held = st.session_state.get("analysis")
if held is not None and (held.image_id != info.id or st.session_state.get("analysis_task") != task_pick):
    held = st.session_state["analysis"] = None
if st.button("Analyze", type="primary"):
    try:
        held = st.session_state["analysis"] = explain.analyze(me, info.id, task=task, mc_passes=passes, restored=restored,
                                                              ensemble=ensemble)
        st.session_state["analysis_task"] = task_pick
    except NotFound as exc:
        st.info(f"{exc} The Explain page needs a deployed classifier (see models/).")
    except MedShieldError as exc:
        st.error(str(exc))

if held is not None:
    st.caption(f"Model: {held.model}")
    a, b, c = st.columns(3)
    a.metric("Prediction", held.prediction)
    b.metric("Triage", held.triage + (" ⚑" if held.flagged else ""), help=held.flag_reason or None)
    c.metric("Uncertainty", f"{held.uncertainty:.2f} bits", help=f"model part (epistemic) {held.epistemic:.2f} bits")
    fig = px.bar(x=list(held.probabilities.values()), y=list(held.probabilities), orientation="h", range_x=[0, 1],
                 text=[f"{v:.0%}" for v in held.probabilities.values()], labels={"x": "probability", "y": ""},
                 height=90 + 40 * len(held.probabilities))
    fig.update_yaxes(type="category")
    fig.update_layout(margin={"l": 10, "r": 10, "t": 10, "b": 10})
    st.plotly_chart(fig, width="stretch")
    st.info(held.findings)

    st.subheader("Heatmap")
    k1, k2, k3, k4 = st.columns(4)
    method = k1.selectbox("Method", METHODS, key="cam_method",
                          help="Grad-CAM family (pytorch-grad-cam) or Integrated Gradients (Captum). Score-CAM runs "
                               "one pass per channel: slow on large layers.")
    target = k2.selectbox("Class to explain", list(held.probabilities), index=list(held.probabilities).index(held.prediction),
                          key="cam_target")
    opacity = k3.slider("Opacity", 0.0, 1.0, 0.45, 0.05, key="cam_opacity")
    cmap = k4.selectbox("Colours", ["jet", "inferno", "viridis", "turbo", "hot"], key="cam_cmap")
    layers = st.session_state.get("cam_layers") or []
    layer = st.selectbox("Layer", ["automatic (last convolution with a map of 7+ cells)"] + layers, key="cam_layer")
    try:
        e = explain.explain(me, info.id, task=task, method=method, layer=None if layer.startswith("automatic") else layer,
                            target=target, restored=restored)
    except MedShieldError as exc:
        st.error(str(exc))
    else:
        st.session_state["cam_layers"] = e.layers
        import matplotlib

        base = np.repeat(held.view[..., None], 3, axis=2)
        heat_rgb = matplotlib.colormaps[cmap](e.heat)[..., :3]
        overlay = (1 - opacity) * base + opacity * heat_rgb
        l, r = st.columns(2)
        l.image(base, caption="Model input", width="stretch", clamp=True)
        r.image(overlay, caption=f"{method} on {e.layer} for {e.target}", width="stretch", clamp=True)
        faithful = e.confidence_drop > 0
        st.markdown(f"**Quality:** removing the 20% hottest pixels changes the class score by "
                    f"{-e.confidence_drop:+.3f} (ROAD){' — the map points at evidence the model uses.' if faithful else ' — this map may be noise.'}")
        if e.boxes:
            st.dataframe(pd.DataFrame([{"x0": b[0][0], "y0": b[0][1], "x1": b[0][2], "y1": b[0][3], "share of heat": f"{b[1]:.0%}"}
                                       for b in e.boxes]), hide_index=True, width="stretch")

st.divider()
st.subheader("Lung segmentation")
st.caption("The deployed U-Net's mask over the image, with its area (mm² when the DICOM header gives the pixel spacing).")
if st.button("Segment lungs"):
    try:
        st.session_state["segmentation"] = (info.id, explain.segment(me, info.id, restored=restored))
    except NotFound as exc:
        st.info(f"{exc} Deploy a segmenter on the Models page.")
    except MedShieldError as exc:
        st.error(str(exc))
seg = st.session_state.get("segmentation")
if seg and seg[0] == info.id:
    sv = seg[1]
    base = np.repeat(sv.view[..., None], 3, axis=2).astype(np.float32) / 255.0
    tint = base.copy()
    tint[sv.mask] = 0.55 * tint[sv.mask] + 0.45 * np.array([0.1, 0.9, 0.3])
    l, r = st.columns(2)
    l.image(base, caption="Image", width="stretch", clamp=True)
    r.image(tint, caption=f"Mask ({sv.model})", width="stretch", clamp=True)
    m1, m2, m3 = st.columns(3)
    m1.metric("Area", f"{sv.area_px:,} px")
    m2.metric("Share of the image", f"{sv.area_fraction:.1%}")
    m3.metric("Area (mm²)", f"{sv.area_mm2:,.0f}" if sv.area_mm2 else "no pixel spacing")
