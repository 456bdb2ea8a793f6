import streamlit as st
from PIL import Image as PILImage
from streamlit_drawable_canvas import st_canvas

from core.imaging.canvas import fabric_from_shapes, shapes_from_fabric
from core.imaging.display import WINDOW_PRESETS, raw_window, to_display_uint8
from core.services import annotate, patients, projects, protect
from ui.common import attempt
from ui.navigation import guard

st.header("Annotate")
me = guard("annotate")
flash = st.session_state.get("annotate_flash")  # (image id, message): kept while that image is open,
# so a component's rerun right after a save does not wipe the confirmation

plist = attempt(projects.list_projects, me) or []
pchoice = {"All images": None, **{f"{p.name} ({p.task_type})": p for p in plist}}
project = pchoice[st.selectbox("Project", list(pchoice), key="annotate_project",
                               help="A project's images and its class list.")]
images = attempt(patients.list_images, me, None, None, 500) or []
if project is not None:
    images = [i for i in images if i.project_id == project.id]
if not images:
    st.info("No image yet.")
    st.stop()
labels = {f"#{i.id} · {i.source_name[-40:]} · {i.modality} · {i.status}": i for i in images}
ids = [i.id for i in labels.values()]
if st.button("Next most useful image", help="The unlabelled image the model is least sure about."):
    nxt = attempt(annotate.next_image, me)
    if nxt in ids:
        st.session_state["annotate_pick"] = list(labels)[ids.index(nxt)]
    else:
        st.info("Every image is labelled.")
info = labels[st.selectbox("Image", list(labels), key="annotate_pick")]
if flash and flash[0] == info.id:
    st.success(flash[1])

got = attempt(protect.protected_pixels, me, info.id)
if got is None:
    st.stop()
pixels, frames, photometric = got.pixels, got.frames, got.photometric
saved = attempt(annotate.get, me, info.id)
pre = st.session_state.setdefault("prelabels", {})
if st.button("AI pre-labels", help="Load the deployed detector's boxes as editable shapes."):
    with st.spinner("Detecting…"):
        found = attempt(annotate.prelabel, me, info.id)
    if found is not None:
        pre[info.id] = found
        st.toast(f"{len(found)} shape(s) proposed")
initial_shapes = (saved.shapes if saved and saved.shapes else []) + pre.get(info.id, [])

c1, c2, c3, c4 = st.columns(4)
tool = c1.selectbox("Tool", ["rect", "polygon", "freedraw", "transform"],
                    format_func={"rect": "Rectangle", "polygon": "Polygon", "freedraw": "Brush (mask)",
                                 "transform": "Edit / move / delete"}.get, key="annotate_tool")
if project is not None:
    cls = c2.selectbox("Class", list(project.classes), key=f"annotate_class_{project.id}")
else:
    cls = c2.text_input("Class", value=st.session_state.get("annotate_class", "lesion"), key="annotate_class")
preset = c3.selectbox("Window", ["auto"] + list(WINDOW_PRESETS), disabled=info.source_format != "dicom", key="annotate_window")
invert = c4.checkbox("Invert", key="annotate_invert")
zoom = st.slider("Display width (px)", 300, 1400, 800, 50, key="annotate_zoom")

window = None
if preset != "auto":
    window = raw_window(WINDOW_PRESETS[preset], got.rescale)  # presets are in HU: use the header's rescale
view = to_display_uint8(pixels, photometric=photometric, frames=frames, window=window)
if invert:
    view = 255 - view
rows, cols = view.shape[:2]
cw = int(zoom)
scale = cols / cw
ch = max(1, int(round(rows / scale)))

canvas = st_canvas(fill_color="rgba(46,134,222,0.25)", stroke_width=12 if tool == "freedraw" else 2,
                   stroke_color="#2e86de", background_image=PILImage.fromarray(view).resize((cw, ch)),
                   height=ch, width=cw, drawing_mode=tool,
                   initial_drawing=fabric_from_shapes(initial_shapes, scale) if initial_shapes else None,
                   key=f"annotate_canvas_{info.id}_{cw}_{len(pre.get(info.id, []))}", update_streamlit=True)
drawn = shapes_from_fabric(canvas.json_data, scale, rows, cols) if canvas.json_data else list(initial_shapes)
old = {(tuple(map(tuple, s.get("points", []))) or tuple(s.get("box", []))): s["label"] for s in initial_shapes}
for s in drawn:
    key = tuple(map(tuple, s.get("points", []))) or tuple(s.get("box", []))
    s["label"] = old.get(key, cls)
st.caption(f"{len(drawn)} shape(s), stored in image pixels ({cols}x{rows}). Status: "
           f"{saved.status if saved else 'unlabelled'}.")

with st.form("annotate_save"):
    a, b = st.columns(2)
    current = (saved.image_label or "") if saved else ""
    if project is not None and project.task_type == "classification":
        opts = [""] + list(project.classes)
        image_label = a.selectbox("Image label", opts, index=opts.index(current) if current in opts else 0)
    else:
        image_label = a.text_input("Image label", value=current)
    use = b.checkbox("Use for training", value=saved.use_for_training if saved else True)
    if st.form_submit_button("Save annotations", type="primary"):
        done = attempt(annotate.save, me, info.id, drawn, image_label or None, use)
        if done:
            st.session_state["annotate_flash"] = (info.id, f"Saved {len(done.shapes)} shape(s) ({done.status}).")
            st.rerun()

if me.role == "doctor" and saved and saved.status in ("pending", "modified"):
    comment = st.text_input("Review comment", key="annotate_comment")
    x, y = st.columns(2)
    if x.button("Approve", type="primary"):
        if attempt(annotate.review, me, info.id, True, comment):
            st.session_state["annotate_flash"] = (info.id, "Annotations approved.")
            st.rerun()
    if y.button("Reject"):
        if attempt(annotate.review, me, info.id, False, comment):
            st.session_state["annotate_flash"] = (info.id, "Annotations rejected.")
            st.rerun()
