import pandas as pd
import streamlit as st

from core.services import pacs, pacs_nodes, patients
from ui.common import attempt, image_choices
from ui.navigation import guard

st.header("PACS")
me = guard("pacs")
nodes = attempt(pacs_nodes.list_nodes, me) or []
if not nodes:
    st.info("No PACS is configured yet. An administrator adds one on the Admin page (or sets MEDSHIELD_PACS_URL).")
    st.stop()
by_name = {f"{n.name} · {n.where}": n for n in nodes}
node = by_name[st.selectbox("PACS", list(by_name), key="pacs_node")]
can_pull = me.role == "technician"
tabs = st.tabs(["Find and pull", "Send protected images"] if can_pull else ["Send protected images"])


@st.fragment(run_every=2)
def pull_progress() -> None:
    for job_id in st.session_state.get("pacs_pulls", [])[-5:][::-1]:
        info = attempt(pacs.get_pull, me, job_id)
        if info is None:
            continue
        counts = ", ".join(f"{v} {k}" for k, v in sorted(info.counts.items()))
        label = f"Pull #{info.job_id}: {info.status} · {counts or 'listing instances…'} of {info.total or '?'}"
        st.progress(min(1.0, info.progress), text=label)
        if info.status == "failed":
            st.error(info.message)
        elif info.status == "done" and info.counts.get("rejected"):
            st.warning(f"{info.counts['rejected']} instance(s) were refused by the upload checks (see the audit log).")


if can_pull:
    with tabs[0]:
        with st.form("pacs_find"):
            a, b = st.columns(2)
            pid = a.text_input("Patient ID")
            name = b.text_input("Patient name", help="Any order and case: 'Doe, Jane', 'DOE^JANE' or 'jane doe'.")
            c, d, e, f = st.columns(4)
            d_from = c.date_input("Study date from", value=None, format="YYYY-MM-DD")
            d_to = d.date_input("to", value=None, format="YYYY-MM-DD")
            modality = e.selectbox("Modality", ["", "CR", "DX", "CT", "MR", "US", "MG", "XA", "NM", "PT", "OT"])
            acc = f.text_input("Accession")
            if st.form_submit_button("Search", type="primary"):
                found = attempt(pacs.find_studies, me, node.id, pid, name, d_from.isoformat() if d_from else "",
                                d_to.isoformat() if d_to else "", modality, acc)
                st.session_state["pacs_studies"] = found
                st.session_state.pop("pacs_series", None)
        studies = st.session_state.get("pacs_studies")
        if studies is not None and not studies:
            st.info("No study matches.")
        if studies:
            st.dataframe(pd.DataFrame([{
                "patient ID": s.patient_id, "name": s.patient_name.replace("^", " "), "date": s.study_date,
                "modalities": s.modalities, "description": s.description, "accession": s.accession,
                "series": s.series_count, "instances": s.instance_count} for s in studies]),
                hide_index=True, width="stretch")
            labels = {f"{s.patient_id} · {s.study_date} · {s.modalities} · {s.description}"[:120]: s for s in studies}
            study = labels[st.selectbox("Study", list(labels), key="pacs_study")]
            series = attempt(pacs.find_series, me, node.id, study.study_uid) or []
            if series:
                st.dataframe(pd.DataFrame([{
                    "number": se.number, "modality": se.modality, "description": se.description,
                    "instances": se.instance_count, "already pulled": getattr(se, "pulled", 0)} for se in series]),
                    hide_index=True, width="stretch")
                opts = {f"#{se.number or '?'} {se.modality} {se.description} ({se.instance_count or '?'} inst.)": se
                        for se in series}
                chosen = st.multiselect("Series to pull", list(opts), default=list(opts))
                people = attempt(patients.search_patients, me, "", limit=500) or []
                target = {"The patient named in each file's header": None}
                target |= {f"{p.patient_code} · {p.name}": p.id for p in people}
                into = st.selectbox("Into patient", list(target))
                if st.button("Pull", type="primary", disabled=not chosen):
                    info = attempt(pacs.pull_series, me, node.id, study.study_uid,
                                   [opts[c].series_uid for c in chosen], target[into])
                    if info is not None:
                        st.session_state.setdefault("pacs_pulls", []).append(info.job_id)
                        st.success(f"Pull #{info.job_id} queued: it runs in the background; progress below.")
        pull_progress()

with tabs[-1]:
    st.caption("Only protected images leave, as a new de-identified series (new UIDs, PatientIdentityRemoved, "
               "the PS3.15 method codes); the clear original never does.")
    choices = image_choices(me, "protected", "No protected image yet: protect images first.")
    dicom_only = {k: v for k, v in choices.items() if v.source_format == "dicom"}
    if not dicom_only:
        st.info("None of the protected images is DICOM: only DICOM goes to a PACS.")
        st.stop()
    picked = st.multiselect("Protected DICOM images", list(dicom_only))
    if st.button("Send to PACS", type="primary", disabled=not picked):
        bar = st.progress(0.0, text="Sending…")
        rep = attempt(pacs.push_images, me, node.id, [dicom_only[p].id for p in picked],
                      lambda d, t: bar.progress(d / max(t, 1), text=f"{d}/{t} sent"))
        if rep is not None:
            st.success(f"{rep.sent} image(s) sent to {node.name}.")
            for i, why in {**rep.refused, **rep.failed}.items():
                st.warning(f"Image #{i}: {why}")
