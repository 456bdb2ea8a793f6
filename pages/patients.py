import pandas as pd
import streamlit as st

from core.services import ingest, patients
from ui.navigation import guard
from ui.common import attempt, fmt_ts

st.header("Patients")
me = guard("patients")

with st.expander("New patient"):
    with st.form("new_patient", clear_on_submit=True):
        a, b, c, d = st.columns([2, 3, 1, 1])
        code = a.text_input("Patient id")
        name = b.text_input("Name")
        age = c.number_input("Age", min_value=0, max_value=130, value=None, step=1)
        sex = d.selectbox("Sex", patients.SEXES)
        notes = st.text_area("Notes")
        if st.form_submit_button("Create patient"):
            p = attempt(patients.create_patient, me, code, name, age, sex, notes)
            if p:
                st.session_state["patient_open"] = p.id
                st.success(f"Patient {p.patient_code} created.")

f1, f2, f3, f4 = st.columns([3, 1, 2, 1])
query = f1.text_input("Search id or name", key="patient_query")
modality = f2.selectbox("Modality", ["any", *ingest.MODALITIES], key="patient_modality")
dates = f3.date_input("Uploaded between", value=(), key="patient_dates")
status = f4.selectbox("Status", ["any", "uploaded", "protected", "restored"], key="patient_status")
date_from = dates[0] if len(dates) >= 1 else None
date_to = dates[1] if len(dates) == 2 else None

found = attempt(patients.search_patients, me, query, None if modality == "any" else modality,
                date_from, date_to, None if status == "any" else status) or []
st.caption(f"{len(found)} patient(s)")
if found:
    st.dataframe(pd.DataFrame([{"id": p.patient_code, "name": p.name, "age": p.age, "sex": p.sex,
                                "images": p.image_count, "modalities": ", ".join(p.modalities),
                                "last upload": fmt_ts(p.last_upload)} for p in found]),
                 hide_index=True, width="stretch")
    labels = {f"{p.patient_code} — {p.name or 'no name'}": p.id for p in found}
    ids = list(labels.values())
    current = st.session_state.get("patient_open")
    index = ids.index(current) if current in ids else 0
    chosen = st.selectbox("Open patient", list(labels), index=index, key="patient_pick")
    pid = labels[chosen]

    info = attempt(patients.get_patient, me, pid)
    if info:
        with st.expander("Edit patient details"):
            with st.form(f"edit_{pid}"):
                a, b, c, d = st.columns([2, 3, 1, 1])
                code = a.text_input("Patient id", info.patient_code)
                name = b.text_input("Name", info.name)
                age = c.number_input("Age", min_value=0, max_value=130, value=info.age, step=1)
                sex = d.selectbox("Sex", patients.SEXES, index=patients.SEXES.index(info.sex) if info.sex in patients.SEXES else 0)
                notes = st.text_area("Notes", info.notes)
                if st.form_submit_button("Save"):
                    if attempt(patients.update_patient, me, pid, code, name, age, sex, notes):
                        st.success("Saved.")
                        st.rerun()
        images = attempt(patients.patient_images, me, pid) or []
        st.subheader(f"Images ({len(images)})")
        if not images:
            st.caption("No images for this patient yet.")
        cols = st.columns(4)
        for n, img in enumerate(images):
            with cols[n % 4]:
                thumb = attempt(patients.image_thumbnail, me, img.id)
                if thumb:
                    st.image(thumb, width="stretch")
                st.caption(f"#{img.id} · {img.modality} · {img.cols}x{img.rows} · {img.bit_depth}-bit · "
                           f"{img.status} · {fmt_ts(img.uploaded_at)}")
