import pandas as pd
import streamlit as st

from core.errors import MedShieldError
from core.services import ingest, patients
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
