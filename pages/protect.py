import pandas as pd
import streamlit as st
from PIL import Image as PILImage
from streamlit_drawable_canvas import st_canvas

from core.geometry import Box
from core.errors import MedShieldError
from core import jobs
from core.imaging.canvas import boxes_from_fabric, fabric_from_boxes
from core.ml.detector import DEFAULT_WEIGHTS
from core.imaging.deid import DeidOptions
from core.imaging.display import to_display_uint8
from core.services import protect
from ui.common import attempt, image_choices
from ui.navigation import guard

st.header("Protect")
me = guard("protect")
if msg := st.session_state.pop("protect_flash", None):
    st.success(msg)
st.caption("Draw a box around every burned-in name, id, date or other identifying text. Each box's "
           "pixels are sealed with AES-256-GCM; the image keeps everything else. DICOM headers are "
           "de-identified (PS3.15 Annex E).")

labels = image_choices(me, "uploaded", "No uploaded image is waiting to be protected.")
info = labels[st.selectbox("Image", list(labels), key="protect_pick")]

cache = st.session_state.setdefault("protect_pixels", {})
if info.id not in cache:
    cache.clear()  # keep one image in memory
    got = attempt(protect.protected_pixels, me, info.id)
    if got is None:
        st.stop()
    cache[info.id] = got
held_px = cache[info.id]
pixels, frames, photometric = held_px.pixels, held_px.frames, held_px.photometric
frame = st.number_input("Frame", 0, frames - 1, 0) if frames > 1 else 0
view = to_display_uint8(pixels, photometric=photometric, frames=frames, frame=frame)
rows, cols = view.shape[:2]

has_detector = DEFAULT_WEIGHTS.exists()
proposals = st.session_state.setdefault("proposals", {})
b1, b2 = st.columns([1, 3], vertical_alignment="bottom")
# the canvas is as wide as chosen here (boxes stay in image pixels): the whole image must be in view
cw = b2.slider("Display width (px)", 300, 1400, min(800, max(cols, 500)) // 50 * 50, 50, key=f"protect_zoom_{info.id}",
               help="Boxes drawn so far are kept when the width changes.")
scale = cols / cw
ch = max(1, int(round(rows / scale)))
if b1.button("Detect burned-in text", disabled=not has_detector,
             help="Runs both text detectors (ours and the pretrained OCR), reads each line and decides: lines to "
                  "seal appear on the canvas for you to check." if has_detector
             else "No detector weights are installed (models/detector)."):
    with st.spinner("Detecting…"):
        found = attempt(protect.detect_regions, me, info.id)
    if found is not None:
        proposals[info.id] = found
        st.session_state["canvas_rev"] = st.session_state.get("canvas_rev", 0) + 1
        n_seal = sum(p.cls != "annotation" for p in found)
        st.toast(f"{n_seal} region(s) proposed, {len(found) - n_seal} technical line(s) left visible")
found_here = proposals.get(info.id) or []
visible = [p for p in found_here if p.cls == "annotation" and p.box.frame == frame]
seal_visible = bool(visible) and st.checkbox(
    f"Also seal the {len(visible)} technical line(s) left visible", key=f"seal_visible_{info.id}",
    help="Lines read as purely technical (kV, mAs, depth, L/R markers...) stay visible by default.")
# what the canvas starts from: the detector's proposals, or (when only the width changed) the boxes
# on the canvas before, so a new width loses nothing drawn; fixed per canvas key
rev = st.session_state.get("canvas_rev", 0)
key = f"canvas_{info.id}_{frame}_{rev}_{cw}_{int(seal_visible)}"
# the boxes last seen on this image and frame, if no detection has run since
last = st.session_state.get("protect_drawn")  # (image, frame, detection rev), boxes
before = last[1] if last and last[0] == (info.id, frame, rev) else None
seed = st.session_state.get("protect_seed")
if seed is None or seed[0] != key:
    if before is not None:
        seed = (key, fabric_from_boxes(before, scale))
    elif found_here:
        seed = (key, fabric_from_boxes([p.box for p in found_here if p.box.frame == frame
                                        and (p.cls != "annotation" or seal_visible)], scale))
    else:
        seed = (key, None)
    st.session_state["protect_seed"] = seed
canvas = st_canvas(fill_color="rgba(228,87,46,0.25)", stroke_width=2, stroke_color="#e4572e",
                   background_image=PILImage.fromarray(view).resize((cw, ch)), height=ch, width=cw,
                   drawing_mode="rect", initial_drawing=seed[1], key=key, update_streamlit=True)
# until a new canvas answers (json_data None), the boxes it was seeded with are the ones on it
drawn = boxes_from_fabric(canvas.json_data, scale, rows, cols, frame) if canvas.json_data is not None else (before or [])
st.session_state["protect_drawn"] = ((info.id, frame, rev), drawn)

left, right = st.columns([3, 2])
with left:
    st.markdown(f"**{len(drawn)} region(s)** in image pixels (edit or delete rows to fix them)")
    matched = protect.regions_for_boxes(drawn, found_here)
    columns = ["x0", "y0", "x1", "y1", "class", "why", "confidence", "seen by"]
    table = pd.DataFrame([{"x0": r.box.x0, "y0": r.box.y0, "x1": r.box.x1, "y1": r.box.y1,
                           "class": "phi" if r.cls == "annotation" else r.cls, "why": r.reason,
                           "confidence": round(r.confidence, 2), "seen by": r.seen_by} for r in matched], columns=columns)
    edited = st.data_editor(
        table, num_rows="dynamic", hide_index=True, key=f"regions_{info.id}_{frame}_{len(drawn)}_{hash(tuple(drawn))}",
        disabled=["why", "confidence", "seen by"],
        column_config={"class": st.column_config.SelectboxColumn(options=list(protect.REGION_CLASSES), required=True),
                       "why": st.column_config.TextColumn(help="header:<tag>: the line shows a value of this file's "
                                                          "own header; rule: a date, ID, name... ; default: not "
                                                          "positively technical; detector: seen, unreadable")})
    if visible and not seal_visible:
        with st.expander(f"{len(visible)} technical line(s) left visible"):
            st.dataframe(pd.DataFrame([{"x0": v.box.x0, "y0": v.box.y0, "x1": v.box.x1, "y1": v.box.y1,
                                        "why": v.reason, "confidence": round(v.confidence, 2)} for v in visible]),
                         hide_index=True)
            grid_v = st.columns(6)
            for n, v in enumerate(visible[:24]):
                b = v.box.clip(rows, cols)
                if not b.empty:
                    grid_v[n % 6].image(view[b.y0:b.y1, b.x0:b.x1], width="stretch")
with right:
    mask = st.selectbox("Mask", protect.MASKS, key="protect_mask",
                        help="How sealed regions look in the protected image.")
    if mask in protect.MASK_WARNINGS:
        st.warning(protect.MASK_WARNINGS[mask])
    opts = DeidOptions()
    if info.source_format == "dicom":
        opts = DeidOptions(
            retain_dates_shifted=st.checkbox("Retain longitudinal dates (shifted per patient)", key="deid_dates"),
            retain_device_identity=st.checkbox("Retain device identity", key="deid_device"))

rows_kept = edited.dropna(subset=["x0", "y0", "x1", "y1"]).to_dict("records")
specs = [spec if spec.cls == cls else protect.RegionSpec(spec.box, cls, spec.confidence, spec.source, spec.reason,
                                                         spec.seen_by)
         for spec, cls in zip(protect.regions_for_boxes(
             [Box(int(r["x0"]), int(r["y0"]), int(r["x1"]), int(r["y1"]), frame) for r in rows_kept], found_here),
             [str(r.get("class") or "phi") for r in rows_kept])]

if specs:
    st.markdown("**Regions to seal**")
    grid = st.columns(6)
    for n, spec in enumerate(specs):
        b = spec.box.clip(rows, cols)
        if not b.empty:
            grid[n % 6].image(view[b.y0:b.y1, b.x0:b.x1], caption=f"{n}: {spec.cls} ({b.x0},{b.y0})", width="stretch")

label = f"Seal {len(specs)} region(s) and protect" if specs else "Protect without regions (no burned-in text)"
if st.button(label, type="primary"):
    with st.status("Sealing regions and de-identifying…") as status:
        try:
            res = protect.protect_image(me, info.id, specs, mask, opts)
        except MedShieldError as exc:
            status.update(label="Not protected", state="error")
            st.error(str(exc))
        else:
            cache.clear()
            st.session_state["protect_flash"] = (
                f"Image #{res.image_id} protected: {res.regions} region(s) sealed, stored as {res.protected_format}"
                + (f", header: {res.deid_method}" if res.deid_method else "") + ".")
            st.rerun()


st.divider()
st.subheader("Protect many images in the background")
with st.form("batch"):
    chosen = st.multiselect("Images", list(labels), default=list(labels)[:50])
    c1, c2, c3 = st.columns(3)
    b_mask = c1.selectbox("Mask", protect.MASKS, key="batch_mask")
    use_det = c2.checkbox("Use the detector", value=has_detector, disabled=not has_detector)
    b_dates = c3.checkbox("Retain shifted dates (DICOM)", key="batch_dates")
    if st.form_submit_button("Queue protection"):
        job = attempt(jobs.enqueue_protect, me, [labels[c].id for c in chosen], b_mask,
                      DeidOptions(retain_dates_shifted=b_dates), use_det)
        if job:
            st.success(f"Job #{job.id} queued: {job.total} image(s).")


@st.fragment(run_every=2)
def job_progress() -> None:
    for j in attempt(jobs.list_jobs, me, 5) or []:
        text = f"Job #{j.id} · {j.status} · {j.done} done, {j.failed} failed of {j.total}"
        st.progress(j.progress, text=text)


job_progress()
