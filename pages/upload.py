import pandas as pd
import streamlit as st

from core.errors import MedShieldError
from core.services import ingest, patients, projects
from ui.navigation import guard
from ui.common import attempt, fmt_ts, runtime

st.header("Upload")
me = guard("upload")
limits = runtime().settings.limits
st.caption(
    f"PNG, JPEG, DICOM (compressed transfer syntaxes too), or a zip of those. A zip laid out as "
    f"class folders (`train/<class>/*.png`) with an optional `labels.csv` imports a labelled "
    f"dataset. Up to {limits.max_file_bytes // 2**20} MB per file; the type is read from the "
    "content, not the file name.")

plist = attempt(patients.search_patients, me, limit=500) or []
choices = {"(from the DICOM header / unassigned)": None}
choices.update({f"{p.patient_code} — {p.name or 'no name'}": p.id for p in plist})
c1, c2 = st.columns([2, 1])
patient_label = c1.selectbox("Patient", list(choices), key="upload_patient",
                             help="DICOM files are filed under the PatientID in their header when no patient is chosen.")
modality = c2.selectbox("Modality for PNG/JPEG", ingest.MODALITIES, key="upload_modality",
                        help="DICOM files carry their own modality.")

with st.expander("New patient"):
    with st.form("new_patient_upload", clear_on_submit=True):
        a, b, c, d = st.columns([2, 3, 1, 1])
        code = a.text_input("Patient id")
        name = b.text_input("Name")
        age = c.number_input("Age", min_value=0, max_value=130, value=None, step=1)
        sex = d.selectbox("Sex", patients.SEXES)
        if st.form_submit_button("Create patient"):
            p = attempt(patients.create_patient, me, code, name, age, sex)
            if p:
                st.success(f"Patient {p.patient_code} created: choose it above.")
                st.rerun()

files = st.file_uploader("Files", accept_multiple_files=True, key="upload_files")
if st.button("Upload", type="primary", disabled=not files):
    bar = st.progress(0.0, text="Checking files…")

    def progress(done: int, total: int, name: str) -> None:
        bar.progress(done / max(total, 1), text=f"{done}/{total} checked")

    try:
        report = ingest.ingest_files(me, [(f.name, f.getvalue()) for f in files],
                                     patient_id=choices[patient_label], modality=modality,
                                     progress=progress)
    except MedShieldError as exc:
        st.error(str(exc))
    else:
        bar.progress(1.0, text="Done")
        st.session_state["last_report"] = report

report = st.session_state.get("last_report")
if report is not None:
    msg = f"{report.accepted} accepted, {report.duplicates} duplicate(s), {report.rejected} rejected."
    (st.success if report.rejected == 0 else st.warning)(msg)
    st.dataframe(pd.DataFrame([{"file": r.name, "result": r.status, "image": r.image_id,
                                "modality": r.modality, "label": r.label or "", "split": r.split or "",
                                "reason": r.reason} for r in report.results]),
                 hide_index=True, width="stretch")

st.subheader("Labelling projects")
st.caption("A project has a task (classification, detection, segmentation), a class list and the model "
           "task its versions serve. Import a labelled dataset into it: class folders or `labels.csv` for "
           "classification; YOLO (`labels/*.txt` + `classes.txt` or `data.yaml`) or COCO (`annotations.json`) "
           "for boxes and polygons. Every label file is checked before anything is stored.")
plist_projects = attempt(projects.list_projects, me) or []
if plist_projects:
    st.dataframe(pd.DataFrame([{"id": p.id, "project": p.name, "task": p.task_type, "classes": ", ".join(p.classes),
                                "model task": p.model_task, "images": p.images, "labelled": p.labelled}
                               for p in plist_projects]), hide_index=True, width="stretch")
with st.expander("New project"):
    with st.form("new_project", clear_on_submit=True):
        a, b = st.columns(2)
        pname = a.text_input("Project name")
        ptype = b.selectbox("Task", projects.TASK_TYPES)
        pclasses = st.text_input("Classes (comma-separated)", placeholder="NORMAL, PNEUMONIA")
        ptask = st.text_input("Model task (optional)", placeholder="classifier-cxr, segmenter-lung, detector…",
                              help="Versions trained from this project serve this task; leave empty for a new one.")
        if st.form_submit_button("Create project"):
            made = attempt(projects.create_project, me, pname, ptype, [c for c in pclasses.split(",")], ptask or None)
            if made:
                st.session_state["project_flash"] = f"Project {made.name} created (model task {made.model_task})."
                st.rerun()
if msg := st.session_state.pop("project_flash", None):
    st.success(msg)
if plist_projects:
    with st.form("import_dataset"):
        pick = st.selectbox("Import into project", [f"#{p.id} · {p.name} ({p.task_type})" for p in plist_projects])
        zf = st.file_uploader("Dataset zip", type=None, key="dataset_zip")
        if st.form_submit_button("Import dataset", disabled=False):
            if zf is None:
                st.error("Choose a zip file first.")
            else:
                pid = int(pick.split(" ")[0][1:])
                with st.spinner("Checking the archive and its label files…"):
                    rep = attempt(projects.import_dataset, me, pid, zf.name, zf.getvalue(), modality)
                if rep:
                    st.success(f"{rep.accepted} image(s) imported, {rep.duplicates} duplicate(s), {rep.rejected} "
                               f"rejected; {rep.shapes} shape(s) from {rep.label_format or 'no'} label files.")

st.subheader("My recent uploads")
recent = attempt(patients.recent_images, me, True, 50) or []
if recent:
    st.dataframe(pd.DataFrame([{"image": i.id, "file": i.source_name, "format": i.source_format,
                                "modality": i.modality, "size": f"{i.cols}x{i.rows}", "frames": i.frames,
                                "bits": i.bit_depth, "patient": i.patient_id, "status": i.status,
                                "uploaded": fmt_ts(i.uploaded_at)} for i in recent]),
                 hide_index=True, width="stretch")
else:
    st.caption("Nothing uploaded yet.")
