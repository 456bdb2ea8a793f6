"""Page flows through Streamlit's AppTest: log in through the real form, see exactly the role's
pages, use them, and be refused where the role has no right."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core import runtime as runtime_mod
from core.services import patients, users
from tests.conftest import ADMIN_PASSWORD, PASSWORD, admin_actor, make_settings
from tests.fixtures import dicom_bytes, png_bytes

HOME = str(Path(__file__).resolve().parent.parent / "Home.py")

ALL_PAGES = {"upload": "pages/upload.py", "patients": "pages/patients.py", "admin": "pages/admin.py",
             "audit": "pages/audit.py", "account": "pages/account.py", "protect": "pages/protect.py",
             "restore": "pages/restore.py", "metrics": "pages/metrics.py", "system": "pages/system.py",
             "explain": "pages/explain.py", "review": "pages/review.py", "annotate": "pages/annotate.py",
             "models": "pages/models.py", "pacs": "pages/pacs.py"}
HEADERS = {"upload": "Upload", "patients": "Patients", "admin": "Admin · users", "audit": "Audit log",
           "account": "My account", "protect": "Protect", "restore": "Restore", "metrics": "Metrics", "system": "System",
           "explain": "Explain", "review": "Review", "annotate": "Annotate",
           "models": "Models", "pacs": "PACS"}
ROLE_PAGES = {"technician": {"upload", "protect", "annotate", "patients", "pacs", "account"},
              "doctor": {"patients", "restore", "explain", "review", "annotate", "models", "metrics", "pacs",
                         "account"},
              "admin": {"admin", "audit", "system", "models", "metrics", "account"}}


@pytest.fixture
def app_rt(tmp_path):
    runtime_mod.reset()
    r = runtime_mod.configure(make_settings(tmp_path, f"sqlite:///{tmp_path / 'app.db'}"))
    st.cache_resource.clear()
    adm = admin_actor(r)
    for role in ("technician", "doctor"):
        users.create_user(adm, role[:4], f"Test {role}", role, PASSWORD, must_change_password=False)
    yield r
    runtime_mod.reset()
    st.cache_resource.clear()


def login(username: str, password: str) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=60).run()
    assert not at.exception, at.exception
    [t for t in at.text_input if t.label == "Username"][0].input(username)
    [t for t in at.text_input if t.label == "Password"][0].input(password)
    [b for b in at.button if b.label == "Sign in"][0].click().run()
    assert not at.exception, at.exception
    return at


def assert_refused(at: AppTest, path: str) -> None:
    """The page is not in the role's navigation (AppTest raises); where AppTest still reaches it
    (it sometimes keeps a page registered from an earlier run), the page's guard refuses it."""
    try:
        at.switch_page(path).run()
    except ValueError as exc:
        assert "Could not find a navigation page" in str(exc)
        return
    assert any("not available for your role" in e.value for e in at.error), headers(at)
    assert not at.file_uploader and not at.dataframe


def headers(at: AppTest) -> list[str]:
    return [h.value for h in at.header]


@pytest.mark.parametrize("username,password,role", [
    ("tech", PASSWORD, "technician"), ("doct", PASSWORD, "doctor"), ("admin", ADMIN_PASSWORD, "admin")])
def test_each_role_sees_exactly_its_pages(app_rt, username, password, role):
    at = login(username, password)
    assert at.session_state["authentication_status"] is True
    first = {"technician": "upload", "doctor": "patients", "admin": "admin"}[role]
    assert HEADERS[first] in headers(at)
    for page in sorted(ROLE_PAGES[role]):
        at.switch_page(ALL_PAGES[page]).run()
        assert not at.exception, (page, at.exception)
        assert HEADERS[page] in headers(at)
        assert not at.error, [e.value for e in at.error]
    for page in sorted(set(ALL_PAGES) - ROLE_PAGES[role]):
        assert_refused(login(username, password), ALL_PAGES[page])


def test_wrong_password_then_lockout_message(app_rt):
    at = login("tech", "wrong-password")
    assert at.session_state["authentication_status"] is False
    assert any("Wrong user name or password" in e.value for e in at.error)
    for _ in range(4):
        at = login("tech", "wrong-password")
    assert any("locked" in e.value for e in at.error)
    at = login("tech", PASSWORD)  # locked: the right password is refused too
    assert at.session_state["authentication_status"] is False
    assert any("locked" in e.value for e in at.error)


def test_technician_uploads_and_sees_it_listed(app_rt):
    at = login("tech", PASSWORD)
    at.switch_page("pages/upload.py").run()
    at.file_uploader[0].set_value([("scan.png", png_bytes(seed=21), "image/png"),
                                   ("study.dcm", dicom_bytes(patient_id="APP-1"), "application/dicom"),
                                   ("fake.dcm", b"not a dicom at all", "application/dicom")]).run()
    [b for b in at.button if b.label == "Upload"][0].click().run()
    assert not at.exception, at.exception
    assert any("2 accepted" in w.value and "1 rejected" in w.value for w in at.warning)
    result = at.dataframe[0].value
    assert sorted(result["result"]) == ["accepted", "accepted", "rejected"]
    mine = at.dataframe[1].value
    assert set(mine["file"]) == {"scan.png", "study.dcm"}
    # the patient from the DICOM header is now listed on the Patients page, with its image
    at.switch_page("pages/patients.py").run()
    assert "APP-1" in set(at.dataframe[0].value["id"])


def test_doctor_searches_patients_and_cannot_reach_upload(app_rt):
    tech = users.authenticate("tech", PASSWORD).actor()
    patients.create_patient(tech, "P-777", "Grace Hopper", 85, "F")
    patients.create_patient(tech, "P-778", "Alan Turing", 41, "M")
    at = login("doct", PASSWORD)
    assert set(at.dataframe[0].value["id"]) == {"P-777", "P-778"}
    at.text_input(key="patient_query").input("hopper").run()
    assert list(at.dataframe[0].value["id"]) == ["P-777"]
    assert_refused(at, "pages/upload.py")


def test_admin_creates_user_and_verifies_audit(app_rt):
    at = login("admin", ADMIN_PASSWORD)
    form_inputs = {t.label: t for t in at.text_input}
    form_inputs["User name"].input("newdoc")
    form_inputs["Full name"].input("New Doctor")
    [s for s in at.selectbox if s.label == "Role"][0].select("doctor")
    [b for b in at.button if b.label == "Create"][0].click().run()
    assert not at.exception, at.exception
    secret = [w.value for w in at.warning if "One-time password for **newdoc**" in w.value]
    assert secret, [w.value for w in at.warning]
    temp = secret[0].split("`")[1]
    assert users.authenticate("newdoc", temp).must_change_password
    at.switch_page("pages/audit.py").run()
    [b for b in at.button if b.label == "Verify hash chain"][0].click().run()
    assert any("Chain intact" in s.value for s in at.success)


def test_forced_password_change(app_rt):
    adm = admin_actor(app_rt)
    info = users.create_user(adm, "fresh", "Fresh User", "doctor", "temporary-1")
    at = login("fresh", "temporary-1")
    assert any("Choose a new password" in w.value for w in at.warning)
    assert_refused(at, "pages/patients.py")
    inputs = {t.label: t for t in at.text_input}
    inputs["Current password"].input("temporary-1")
    inputs["New password"].input("my-new-password")
    inputs["Repeat new password"].input("my-new-password")
    [b for b in at.button if b.label == "Change password"][0].click().run()
    assert not at.exception, at.exception
    assert not users.session_user("fresh").must_change_password
    at.switch_page("pages/patients.py").run()
    assert "Patients" in headers(at)
    assert info.username == "fresh"


def test_logout(app_rt):
    from core.services import audit_log

    at = login("doct", PASSWORD)
    [b for b in at.button if b.label == "Log out"][0].click().run()
    assert not at.session_state["authentication_status"]
    assert at.session_state["logout"] is True  # the cookie will not sign them back in
    assert "actor" not in at.session_state
    events = audit_log.search_events(admin_actor(app_rt), username="doct", action="auth.logout")
    assert len(events) == 1 and events[0].outcome == "success"


def test_idle_session_is_signed_out(app_rt):
    import time as _time

    at = AppTest.from_file(HOME, default_timeout=60)
    info = users.authenticate("doct", PASSWORD)
    at.session_state["authentication_status"] = True
    at.session_state["username"] = info.username
    at.session_state["name"] = info.name
    at.session_state["roles"] = [info.role]
    at.session_state["logout"] = None
    at.session_state["last_seen"] = _time.time() - 31 * 60  # idle longer than the 30-minute default
    at.run()
    assert not at.exception, at.exception
    assert not at.session_state["authentication_status"]
    assert any("inactivity" in i.value for i in at.info)
    assert any(t.label == "Username" for t in at.text_input)
    from core.services import audit_log

    ev = audit_log.search_events(admin_actor(app_rt), username="doct", action="auth.logout")
    assert ev and ev[0].detail == "idle timeout"


def test_active_session_is_kept(app_rt):
    import time as _time

    at = AppTest.from_file(HOME, default_timeout=60)
    info = users.authenticate("doct", PASSWORD)
    for k, v in {"authentication_status": True, "username": info.username, "name": info.name,
                 "roles": [info.role], "logout": None, "last_seen": _time.time() - 60}.items():
        at.session_state[k] = v
    at.run()
    assert at.session_state["authentication_status"] and "Patients" in headers(at)


def test_protect_then_restore_pages(app_rt):
    from core.services import ingest
    from core.services.protect import RegionSpec, protect_image
    from core.crypto.sealing import Box

    tech = users.authenticate("tech", PASSWORD).actor()
    rep = ingest.ingest_files(tech, [("plain.dcm", dicom_bytes(seed=5)), ("text.png", png_bytes(80, 90, seed=6))])
    plain_id, text_id = (r.image_id for r in rep.results)
    protect_image(tech, text_id, [RegionSpec(Box(5, 5, 40, 20))])  # sealed through core

    at = login("tech", PASSWORD)
    at.switch_page("pages/protect.py").run()
    assert not at.exception, at.exception
    assert "Protect" in headers(at)
    [b for b in at.button if "Protect without regions" in b.label][0].click().run()
    assert not at.exception, at.exception
    assert any(f"Image #{plain_id} protected" in s.value for s in at.success)

    at = login("doct", PASSWORD)
    at.switch_page("pages/restore.py").run()
    pick = at.selectbox(key="restore_pick")
    pick.select([o for o in pick.options if o.startswith(f"#{text_id} ")][0]).run()
    [b for b in at.button if b.label == "Restore original"][0].click().run()
    assert not at.exception, at.exception
    assert any("Verified" in s.value and "1 region(s)" in s.value for s in at.success)
    at.switch_page("pages/metrics.py").run()
    assert not at.exception, at.exception
    assert [m.value for m in at.metric][:2] == ["2", "1"]  # two protected images, one sealed region


def test_doctor_explains_switches_cam_and_approves(app_rt, tmp_path, monkeypatch):
    import torch

    from core.ml import classifier
    from core.services import ingest, models

    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    torch.save({"arch": "resnet18", "classes": ("NORMAL", "PNEUMONIA"), "size": 64,
                "state_dict": classifier.build("resnet18", 2).state_dict()}, path)
    from tests.conftest import deploy_test_model

    deploy_test_model(app_rt, "classifier-cxr", path, "tiny-cxr")
    tech = users.authenticate("tech", PASSWORD).actor()
    ingest.ingest_files(tech, [("x.png", png_bytes(90, 90, seed=8))])
    at = login("doct", PASSWORD)
    at.switch_page("pages/explain.py").run()
    [b for b in at.button if b.label == "Analyze"][0].click().run()
    assert not at.exception, at.exception
    assert [m.label for m in at.metric][:3] == ["Prediction", "Triage", "Uncertainty"]
    assert any("Quality" in m.value for m in at.markdown), "the heatmap and its quality score are shown"
    at.selectbox(key="cam_method").select("eigencam").run()
    at.slider(key="cam_opacity").set_value(0.8).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("eigencam on" in m.value or "Quality" in m.value for m in at.markdown)
    at.switch_page("pages/review.py").run()
    at.radio[0].set_value("approved")
    [b for b in at.button if b.label == "Save review"][0].click().run()
    assert not at.exception, at.exception
    assert any("approved" in s.value for s in at.success)
    classifier.load.cache_clear()


def test_annotate_page_saves_and_doctor_approves(app_rt):
    from core.services import annotate, ingest

    tech = users.authenticate("tech", PASSWORD).actor()
    image_id = ingest.ingest_files(tech, [("scan.dcm", dicom_bytes(64, 64, seed=12, modality="CT"))]).results[0].image_id
    at = login("tech", PASSWORD)
    at.switch_page("pages/annotate.py").run()
    assert not at.exception, at.exception
    at.selectbox(key="annotate_window").select("lung").run()
    assert not at.exception, at.exception
    [t for t in at.text_input if t.label == "Image label"][0].input("NORMAL")
    [b for b in at.button if b.label == "Save annotations"][0].click().run()
    assert not at.exception, at.exception
    assert annotate.get(tech, image_id).image_label == "NORMAL"
    at = login("doct", PASSWORD)
    at.switch_page("pages/annotate.py").run()
    [b for b in at.button if b.label == "Approve"][0].click().run()
    assert not at.exception, at.exception
    assert annotate.get(tech, image_id).status == "approved"


def test_technician_imports_a_project_and_doctor_trains_and_cancels(app_rt):
    from core import jobs
    from core.services import training
    from tests.test_training import class_zip

    at = login("tech", PASSWORD)
    assert not at.exception, at.exception
    [t for t in at.text_input if t.label == "Project name"][0].input("Spots")
    [t for t in at.text_input if t.label == "Classes (comma-separated)"][0].input("clear, spot")
    [b for b in at.button if b.label == "Create project"][0].click().run()
    assert not at.exception, at.exception
    assert any("Project Spots created" in s.value for s in at.success), [s.value for s in at.success]
    from core.services import projects

    tech = users.authenticate("tech", PASSWORD).actor()
    proj = projects.list_projects(tech)[0]
    assert proj.task_type == "classification" and proj.model_task == "classifier-spots"
    projects.import_dataset(tech, proj.id, "spots.zip", class_zip(4))  # the file widget's data path

    jobs.queue(app_rt, immediate=False)  # no worker: the job waits in the queue
    at = login("doct", PASSWORD)
    at.switch_page("pages/models.py").run()
    assert not at.exception, at.exception
    at.number_input[0].set_value(2)
    [b for b in at.button if b.label == "Start training"][0].click().run()
    assert not at.exception, at.exception
    assert any("Training job" in s.value and "queued" in s.value for s in at.success)
    doc = users.authenticate("doct", PASSWORD).actor()
    job = training.list_training_jobs(doc)[0]
    assert job.status == "queued" and job.epochs == 2
    [b for b in at.button if b.label == "Cancel"][0].click().run()
    assert not at.exception, at.exception
    assert training.get_training_job(doc, job.id).status == "cancelled"
