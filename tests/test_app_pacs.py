"""The PACS pages as users drive them (AppTest) against the real Orthanc: the admin adds a DICOMweb node
and tests it, the technician searches, pulls a series into MedShield, protects nothing by hand and
sends a protected image back."""

from __future__ import annotations

import time

import pytest
from sqlmodel import func, select

from core.db.models import Image
from core.services import ingest, protect
from tests.conftest import ADMIN_PASSWORD, PASSWORD
from tests.fixtures import dicom_series, pydicom_file
from tests.test_app import app_rt, login  # noqa: F401  (fixture)
from tests.test_pacs import WHY, orthanc  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(bool(WHY), reason=WHY or "")


def test_admin_adds_node_technician_pulls_and_sends(app_rt, orthanc):  # noqa: F811
    from core import jobs

    orthanc.clear()
    for f in dicom_series(4, patient_id="APP-PACS-1", patient_name="Appel^Anna", seed=21):
        orthanc.upload(f)
    jobs.queue(app_rt, immediate=True)
    try:
        at = login("admin", ADMIN_PASSWORD)
        at.switch_page("pages/admin.py").run()
        assert not at.exception, at.exception
        form = {t.label: t for t in at.text_input}
        form["Name"].input("Test Orthanc")
        form["Base URL"].input(orthanc.dicomweb_url)
        [s for s in at.selectbox if s.label == "Authentication"][0].select("basic")
        form["User name (basic)"].input(orthanc.user)
        form["Password or token"].input(orthanc.password)
        [b for b in at.button if b.label == "Add node"][0].click().run()
        assert not at.exception, at.exception
        assert any("Test Orthanc added" in s.value for s in at.success)
        [b for b in at.button if b.label == "Test connection"][0].click().run()
        assert any("Connected" in s.value for s in at.success), [e.value for e in at.error]
        shown = " ".join(d.value.to_string() for d in at.dataframe) + " ".join(m.value for m in at.markdown)
        assert "Test Orthanc" in shown and orthanc.password not in shown

        at = login("tech", PASSWORD)
        at.switch_page("pages/pacs.py").run()
        assert not at.exception, at.exception
        [t for t in at.text_input if t.label == "Patient name"][0].input("anna appel")
        [b for b in at.button if b.label == "Search"][0].click().run()
        assert not at.exception, at.exception
        assert at.dataframe and "APP-PACS-1" in at.dataframe[0].value.to_string()
        with app_rt.session() as s:
            before = s.exec(select(func.count()).select_from(Image)).one()
        [b for b in at.button if b.label == "Pull"][0].click().run()
        assert not at.exception, at.exception
        assert any("queued" in s.value for s in at.success)
        with app_rt.session() as s:
            assert s.exec(select(func.count()).select_from(Image)).one() == before + 4
        time.sleep(0.1)
        at.run()
        assert any("done · 4 accepted" in p.proto.text for p in at.get("progress")), [p.proto.text for p in at.get("progress")]

        # send a protected image back
        image_id = ingest.ingest_files(_tech(app_rt), [("mr.dcm", pydicom_file("MR_small.dcm"))]).results[0].image_id
        protect.protect_image(_tech(app_rt), image_id, [])
        at.switch_page("pages/pacs.py").run()
        send = [m for m in at.multiselect if m.label == "Protected DICOM images"][0]
        send.select(next(o for o in send.options if o.startswith(f"#{image_id} "))).run()
        [b for b in at.button if b.label == "Send to PACS"][0].click().run()
        assert not at.exception, at.exception
        assert any("1 image(s) sent" in s.value for s in at.success), [e.value for e in at.error]
        assert len(orthanc.rest("GET", "/instances")) == 5
    finally:
        jobs.queue(app_rt, immediate=False)


def _tech(rt):
    from core.db.models import User
    from core.security import Actor

    with rt.session() as s:
        u = s.exec(select(User).where(User.username == "tech")).one()
        return Actor(u.id, u.username, u.role)
