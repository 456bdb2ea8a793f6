"""PACS against a real Orthanc 1.10 (Debian's orthanc + orthanc-dicomweb) in a network namespace made by
the test: nodes with encrypted credentials, connection errors, find, pull over DICOMweb and DIMSE on
the real queue code path, duplicate pulls, a study that vanishes mid-pull, a rejected instance, a
dropped connection that resumes, pushes (STOW-RS and C-STORE) read back from Orthanc's own REST API."""

from __future__ import annotations

import io
import socket
import subprocess
import threading
import time

import pytest
from pydicom import dcmread
from sqlmodel import func, select

from core.db.models import AuditEvent, Image, Job, PacsInstance, PacsNode
from core.errors import AccessDenied, Conflict, PacsError, ValidationError
from core.geometry import Box
from core.services import ingest, keys, operations, pacs, pacs_nodes, patients, protect
from scripts import orthanc_netns
from tests.fixtures import dicom_series, pydicom_file

WHY = orthanc_netns.unavailable()


@pytest.fixture(scope="module")
def orthanc():
    if WHY:
        pytest.skip(WHY)
    o = orthanc_netns.start()
    yield o
    o.stop()


@pytest.fixture
def pacs_env(rt, orthanc, make_user):
    """A clean Orthanc, a technician, a doctor, an admin, and both kinds of node pointing at it."""
    from core import jobs

    orthanc.clear()
    jobs.queue(rt, immediate=True)
    admin = make_user("admin")
    web = pacs_nodes.save_node(admin, "Orthanc web", "dicomweb", url=orthanc.dicomweb_url, auth="basic",
                               username=orthanc.user, secret=orthanc.password, timeout_s=5)
    dimse = pacs_nodes.save_node(admin, "Orthanc DIMSE", "dimse", ae_title=orthanc.aet, host=orthanc.ip,
                                 port=orthanc.dicom_port, timeout_s=5)
    yield dict(o=orthanc, admin=admin, tech=make_user("technician"), doctor=make_user("doctor"), web=web.id,
               dimse=dimse.id)
    jobs.queue(rt, immediate=False)


def _seed(o, files):
    for f in files:
        o.upload(f)


def _images(rt) -> int:
    with rt.session() as s:
        return s.exec(select(func.count()).select_from(Image)).one()


def _pull_done(rt, tech, node, study, series, patient_id=None):
    info = pacs.pull_series(tech, node, study, series, patient_id=patient_id)
    return pacs.get_pull(tech, info.job_id)


# ------------------------------------------------------------------ nodes (no server needed)

def test_node_secret_is_wrapped_never_shown_and_rotated(rt, make_user):
    admin = make_user("admin")
    secret = "s3cret-PACS-pa55word"
    n = pacs_nodes.save_node(admin, "Main PACS", "dicomweb", url="https://pacs.example.org/dicom-web/",
                             auth="basic", username="svc", secret=secret)
    assert n.has_secret and n.url == "https://pacs.example.org/dicom-web"
    assert secret not in repr(n)
    with rt.session() as s:
        row = s.get(PacsNode, n.id)
        assert secret.encode() not in bytes(row.secret_wrapped)
        details = " ".join(e.detail or "" for e in s.exec(select(AuditEvent)).all())
    assert secret not in details
    keys.rotate_master_key(admin)
    with rt.session() as s:
        row = s.get(PacsNode, n.id)
        assert row.secret_key_id == rt.keyring.current.id
        assert pacs_nodes._config(row).secret == secret
    # a change without a new secret keeps the old one; auth "none" drops it
    pacs_nodes.save_node(admin, "Main PACS", "dicomweb", url="https://pacs.example.org/dicom-web", auth="basic",
                         username="svc", node_id=n.id)
    with rt.session() as s:
        assert pacs_nodes._config(s.get(PacsNode, n.id)).secret == secret
    assert not pacs_nodes.save_node(admin, "Main PACS", "dicomweb", url="https://pacs.example.org/dicom-web",
                                    auth="none", node_id=n.id).has_secret


@pytest.mark.parametrize("kw,msg", [
    (dict(kind="dicomweb", url="ftp://x"), "http"),
    (dict(kind="dicomweb", url="https://u:p@x/dicom-web"), "own fields"),
    (dict(kind="dimse", ae_title="", host="h", port=104), "AE title"),
    (dict(kind="dimse", ae_title="A", host="h", port=70000), "port"),
    (dict(kind="gopher"), "kind"),
])
def test_node_validation(rt, make_user, kw, msg):
    with pytest.raises(ValidationError, match=msg):
        pacs_nodes.save_node(make_user("admin"), "x", **kw)


def test_roles(rt, make_user):
    admin, tech, doctor = make_user("admin"), make_user("technician"), make_user("doctor")
    for who in (tech, doctor):
        with pytest.raises(AccessDenied):
            pacs_nodes.save_node(who, "x", "dimse", ae_title="A", host="h", port=104)
    node = pacs_nodes.save_node(admin, "x", "dimse", ae_title="A", host="h", port=104)
    assert [n.name for n in pacs_nodes.list_nodes(doctor)] == ["x"]
    with pytest.raises(AccessDenied):
        pacs.find_studies(doctor, node.id, patient_id="P")
    with pytest.raises(AccessDenied):
        pacs.find_studies(admin, node.id, patient_id="P")
    with pytest.raises(AccessDenied):
        pacs.push_images(admin, node.id, [1])


def test_env_url_defines_a_node(rt, make_user, monkeypatch):
    from dataclasses import replace

    url = "dicomweb+https://svc:pa%24%24@pacs.example.org:8443/dicom-web?calling=MS1"
    monkeypatch.setattr(rt, "settings", replace(rt.settings, pacs_url=url))
    nodes = pacs_nodes.list_nodes(make_user("technician"))
    assert len(nodes) == 1 and nodes[0].from_env and nodes[0].url == "https://pacs.example.org:8443/dicom-web"
    assert nodes[0].auth == "basic" and nodes[0].username == "svc" and nodes[0].has_secret
    with rt.session() as s:
        assert pacs_nodes._config(s.get(PacsNode, nodes[0].id)).secret == "pa$$"
    with pytest.raises(Conflict):
        pacs_nodes.delete_node(make_user("admin"), nodes[0].id)
    assert pacs_nodes.parse_pacs_url("dimse://ORTHANC@10.0.0.5:4242")["port"] == 4242


def test_connection_errors_are_clear(rt, make_user):
    admin = make_user("admin")
    # refused: nothing listens on this port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    n = pacs_nodes.save_node(admin, "closed", "dicomweb", url=f"http://127.0.0.1:{closed}/dicom-web", timeout_s=2)
    with pytest.raises(PacsError, match="Cannot connect"):
        pacs_nodes.test_node(admin, n.id)
    d = pacs_nodes.save_node(admin, "closed dimse", "dimse", ae_title="X", host="127.0.0.1", port=closed, timeout_s=2)
    with pytest.raises(PacsError, match="Cannot"):
        pacs_nodes.test_node(admin, d.id)
    # timeout: a server that accepts and never answers
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        t = pacs_nodes.save_node(admin, "silent", "dicomweb", url=f"http://127.0.0.1:{silent.getsockname()[1]}/x",
                                 timeout_s=1)
        t0 = time.time()
        with pytest.raises(PacsError, match="did not answer"):
            pacs_nodes.test_node(admin, t.id)
        assert time.time() - t0 < 10
    finally:
        silent.close()
    info = {x.name: x for x in pacs_nodes.list_nodes(admin)}
    assert info["closed"].last_test_ok is False and "Cannot connect" in info["closed"].last_test_message


# ------------------------------------------------------------------ against Orthanc

def test_test_connection_and_wrong_password(pacs_env):
    e = pacs_env
    assert "Connected" in pacs_nodes.test_node(e["admin"], e["web"])
    assert "Connected" in pacs_nodes.test_node(e["admin"], e["dimse"])
    bad = pacs_nodes.save_node(e["admin"], "wrong pw", "dicomweb", url=e["o"].dicomweb_url, auth="basic",
                               username=e["o"].user, secret="not-it")
    with pytest.raises(PacsError, match="credentials"):
        pacs_nodes.test_node(e["admin"], bad.id)
    tls = pacs_nodes.save_node(e["admin"], "tls to a plain port", "dicomweb",
                               url=e["o"].dicomweb_url.replace("http://", "https://"), timeout_s=5)
    with pytest.raises(PacsError, match="TLS"):
        pacs_nodes.test_node(e["admin"], tls.id)
    aet = pacs_nodes.save_node(e["admin"], "dimse wrong port", "dimse", ae_title="NOPE", host=e["o"].ip,
                               port=e["o"].http_port, timeout_s=3)  # an HTTP server does not speak DICOM
    with pytest.raises(PacsError):
        pacs_nodes.test_node(e["admin"], aet.id)


@pytest.mark.parametrize("kind", ["web", "dimse"])
def test_find_and_pull_then_pull_again(rt, pacs_env, kind):
    e = pacs_env
    files = dicom_series(6, patient_id="PACS-007", patient_name="Pullman^Paula")
    _seed(e["o"], files + [pydicom_file("MR_small.dcm")])
    node = e[kind]
    for name in ("Pullman^Paula", "paula pullman", "PULLMAN, Paula"):
        found = pacs.find_studies(e["tech"], node, patient_name=name)
        assert [s.patient_id for s in found] == ["PACS-007"], name
    study = found[0]
    assert study.instance_count in (None, 6)
    assert pacs.find_studies(e["tech"], node, date_from="2000-01-01", date_to="2000-01-02") == []
    with pytest.raises(ValidationError):
        pacs.find_studies(e["tech"], node)
    series = pacs.find_series(e["tech"], node, study.study_uid)
    assert len(series) == 1 and series[0].modality == "CT"
    before = _images(rt)
    job = _pull_done(rt, e["tech"], node, study.study_uid, [series[0].series_uid])
    assert job.status == "done" and job.total == 6 and job.counts == {"accepted": 6}, job
    assert _images(rt) == before + 6
    with rt.session() as s:
        imgs = s.exec(select(Image).order_by(Image.id.desc()).limit(6)).all()
        assert {i.modality for i in imgs} == {"CT"} and len({i.patient_id for i in imgs}) == 1
    # the same pull again: nothing new is fetched or stored
    again = _pull_done(rt, e["tech"], node, study.study_uid, [series[0].series_uid])
    assert again.status == "done" and again.counts == {"accepted": 6} and _images(rt) == before + 6
    assert pacs.find_series(e["tech"], node, study.study_uid)[0].pulled == 6


def test_pull_into_chosen_patient_and_a_rejected_instance(rt, pacs_env):
    e = pacs_env
    good = dicom_series(3, patient_id="PACS-010", seed=10)
    bad = dcmread(io.BytesIO(good[0]))
    from pydicom.uid import generate_uid

    bad.SOPInstanceUID = bad.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    bad.Rows, bad.Columns = 30000, 30000  # declares 900 Mpixels over a few KB of pixel data
    buf = io.BytesIO()
    bad.save_as(buf)
    _seed(e["o"], good + [buf.getvalue()])
    p = patients.create_patient(e["tech"], "MRN-PACS-10", "Chosen Patient")
    study = pacs.find_studies(e["tech"], e["web"], patient_id="PACS-010")[0]
    series = pacs.find_series(e["tech"], e["web"], study.study_uid)
    job = _pull_done(rt, e["tech"], e["web"], study.study_uid, [series[0].series_uid], patient_id=p.id)
    assert job.status == "done" and job.counts == {"accepted": 3, "rejected": 1}, job
    with rt.session() as s:
        rejected = s.exec(select(PacsInstance).where(PacsInstance.status == "rejected")).one()
        assert rejected.image_id is None and rejected.reason
        assert {i.patient_id for i in s.exec(select(Image)).all()} == {p.id}


def test_study_that_disappears_mid_pull(rt, pacs_env, monkeypatch):
    e = pacs_env
    files = dicom_series(8, patient_id="PACS-011", seed=11)
    _seed(e["o"], files)
    study = pacs.find_studies(e["tech"], e["web"], patient_id="PACS-011")[0]
    series = pacs.find_series(e["tech"], e["web"], study.study_uid)[0]
    monkeypatch.setattr(pacs, "CHUNK", 3)
    from core.pacs import DicomWebClient

    real_fetch, fetched = DicomWebClient._instance_bytes, []

    def fetch_then_delete(self, *a):  # the study is deleted on the PACS once three instances came over
        data = real_fetch(self, *a)
        fetched.append(1)
        if len(fetched) == 3:
            e["o"].clear()
        return data

    monkeypatch.setattr(DicomWebClient, "_instance_bytes", fetch_then_delete)
    job = _pull_done(rt, e["tech"], e["web"], study.study_uid, [series.series_uid])
    assert job.status == "done" and job.counts == {"accepted": 3, "missing": 5}, job
    assert _images(rt) == 3


def test_short_stream_is_completed_instance_by_instance(rt, pacs_env, monkeypatch):
    """A fresh series is streamed in one request without listing it first; when the reply ends early
    (a server that closes the multipart cleanly), the series is listed and the rest fetched one by one."""
    from itertools import islice

    from core.pacs import DicomWebClient

    e = pacs_env
    n = 60
    _seed(e["o"], dicom_series(n, patient_id="PACS-015", seed=15))
    study = pacs.find_studies(e["tech"], e["web"], patient_id="PACS-015")[0]
    series = pacs.find_series(e["tech"], e["web"], study.study_uid)[0]
    real_stream, real_fetch, one_by_one = DicomWebClient.stream_series, DicomWebClient._instance_bytes, []
    monkeypatch.setattr(DicomWebClient, "stream_series", lambda self, *a: islice(real_stream(self, *a), 40))
    monkeypatch.setattr(DicomWebClient, "_instance_bytes",
                        lambda self, *a: one_by_one.append(a[-1]) or real_fetch(self, *a))
    job = _pull_done(rt, e["tech"], e["web"], study.study_uid, [series.series_uid])
    assert job.status == "done" and job.counts == {"accepted": n} and job.total == n, job
    assert len(one_by_one) == n - 40 and _images(rt) == n


def test_dropped_connection_resumes_without_duplicates(rt, pacs_env, monkeypatch):
    """The veth link to the PACS goes down mid-pull for a few seconds: requests time out, the pull
    retries and resumes; every instance is stored once. 60 instances: a fresh pull streams the series in
    one request, the resumed one fetches what is left instance by instance."""
    e = pacs_env
    n = 60
    _seed(e["o"], dicom_series(n, patient_id="PACS-012", seed=12))
    admin = e["admin"]
    node = pacs_nodes.save_node(admin, "short timeout", "dicomweb", url=e["o"].dicomweb_url, auth="basic",
                                username=e["o"].user, secret=e["o"].password, timeout_s=1)
    study = pacs.find_studies(e["tech"], node.id, patient_id="PACS-012")[0]
    series = pacs.find_series(e["tech"], node.id, study.study_uid)[0]
    monkeypatch.setattr(pacs, "CHUNK", 5)
    link = f"{e['o'].name}h"
    dropped, went_down = threading.Event(), threading.Event()

    def drop():
        while not dropped.is_set():
            with rt.session() as s:
                if s.exec(select(func.count()).select_from(PacsInstance)).one() >= 5:
                    subprocess.run(["ip", "link", "set", link, "down"], check=True)
                    went_down.set()
                    dropped.set()
                    time.sleep(2.5)
                    subprocess.run(["ip", "link", "set", link, "up"], check=True)
                    return
            time.sleep(0.01)

    t = threading.Thread(target=drop, daemon=True)
    t.start()
    job = _pull_done(rt, e["tech"], node.id, study.study_uid, [series.series_uid])
    dropped.set()
    t.join(10)
    subprocess.run(["ip", "link", "set", link, "up"], check=False)
    assert went_down.is_set(), "the link went down while the pull ran"
    assert job.status == "done" and job.counts == {"accepted": n}, job
    assert _images(rt) == n
    with rt.session() as s:
        assert s.exec(select(func.count()).select_from(PacsInstance)).one() == n


def test_failed_pull_is_retried_from_the_system_page(rt, pacs_env, monkeypatch):
    e = pacs_env
    _seed(e["o"], dicom_series(3, patient_id="PACS-013", seed=13))
    study = pacs.find_studies(e["tech"], e["web"], patient_id="PACS-013")[0]
    series = pacs.find_series(e["tech"], e["web"], study.study_uid)[0]
    monkeypatch.setattr(pacs, "ATTEMPTS", 1)
    with rt.session() as s:  # the PACS's password changed under us
        row = s.get(PacsNode, e["web"])
        pacs_nodes._set_secret(row, "changed")
        s.add(row)
    job = _pull_done(rt, e["tech"], e["web"], study.study_uid, [series.series_uid])
    assert job.status == "failed" and "credentials" in job.message
    with rt.session() as s:
        row = s.get(PacsNode, e["web"])
        pacs_nodes._set_secret(row, e["o"].password)
        s.add(row)
    assert operations.retry(e["admin"], job.job_id) == job.job_id
    done = pacs.get_pull(e["tech"], job.job_id)
    assert done.status == "done" and done.counts == {"accepted": 3}


def _orthanc_tags(o, sop_uid: str) -> dict:
    found = o.rest("POST", "/tools/find", data=b'{"Level":"Instance","Query":{"SOPInstanceUID":"%s"}}' % sop_uid.encode())
    assert len(found) == 1, f"{sop_uid} is not in Orthanc"
    return o.rest("GET", f"/instances/{found[0]}/simplified-tags")


@pytest.mark.parametrize("kind", ["web", "dimse"])
def test_push_protected_us_multiframe_carries_no_phi(rt, pacs_env, kind):
    e = pacs_env
    data = pydicom_file("examples_ybr_color.dcm")  # US, 30 frames, JPEG baseline, burned-in label
    src = dcmread(io.BytesIO(data), stop_before_pixels=True)
    image_id = ingest.ingest_files(e["tech"], [("us.dcm", data)]).results[0].image_id
    with pytest.raises(Conflict, match="not protected"):
        pacs.push_images(e["tech"], e[kind], [image_id])
    with rt.session() as s:
        denied = s.exec(select(AuditEvent).where(AuditEvent.action == "pacs.push",
                                                 AuditEvent.outcome == "denied")).all()
    assert denied and e["o"].rest("GET", "/instances") == []
    protect.protect_image(e["tech"], image_id, [protect.RegionSpec(Box(0, 0, 200, 40))])
    rep = pacs.push_images(e["doctor"], e[kind], [image_id])
    assert rep.sent == 1 and not rep.failed and not rep.refused
    sent = dcmread(io.BytesIO(protect.protected_file(e["tech"], image_id).data), stop_before_pixels=True)
    tags = _orthanc_tags(e["o"], str(sent.SOPInstanceUID))
    assert tags["PatientIdentityRemoved"] == "YES" and tags["NumberOfFrames"] == "30"
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert tags[kw] != str(src.get(kw)), kw
    assert tags.get("DeidentificationMethodCodeSequence")
    phi = {k: str(src.get(k)) for k in ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName",
                                        "ReferringPhysicianName", "AccessionNumber", "StudyDate", "StudyTime",
                                        "OperatorsName", "StationName", "StudyID") if src.get(k)}
    assert len(phi) >= 4, "the source file carries PHI to look for"
    assert {k: tags.get(k) for k in phi if tags.get(k) == phi[k]} == {}
    flat = repr(tags)  # nor anywhere else (a value copied into another element)
    assert not [v for v in phi.values() if len(v) >= 5 and v in flat]


def test_push_refuses_png_and_unknown_ids(rt, pacs_env):
    from tests.fixtures import png_bytes

    e = pacs_env
    png = ingest.ingest_files(e["tech"], [("a.png", png_bytes())]).results[0].image_id
    protect.protect_image(e["tech"], png, [])
    rep_ids = [png, 987654]
    with pytest.raises(Conflict, match="Nothing was sent"):
        pacs.push_images(e["tech"], e["web"], rep_ids)
    ct = ingest.ingest_files(e["tech"], [("ct.dcm", pydicom_file("CT_small.dcm"))]).results[0].image_id
    protect.protect_image(e["tech"], ct, [])
    rep = pacs.push_images(e["tech"], e["web"], [png, ct])
    assert rep.sent == 1 and set(rep.refused) == {png}
    with rt.session() as s:
        assert s.exec(select(func.count()).select_from(Job).where(Job.kind == "pacs_pull")).one() == 0
