"""Model lifecycle end to end on real SQLite and PostgreSQL, with the real queue (Huey in
immediate mode, or the worker's own task function in a thread): projects, dataset import
(class folders, YOLO, COCO), approval, training one epoch on CPU, evaluation, deploy, inference
switching to the new version, fine-tuning, cancelling queued and running jobs, refusals."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlmodel import select

from core import jobs
from core.db.models import Annotation, Image, Job, ModelVersion
from core.errors import AccessDenied, Conflict, InvalidImage, ValidationError
from core.services import annotate, datasets, explain, projects, training


def _img(seed: int, bright: bool, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.normal(60, 12, (size, size))
    if bright:
        yy, xx = np.mgrid[0:size, 0:size]
        cy, cx = rng.integers(14, size - 14, 2)
        arr[(yy - cy) ** 2 + (xx - cx) ** 2 < 64] = 220
    buf = io.BytesIO()
    PILImage.fromarray(arr.clip(0, 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def class_zip(n: int = 6) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        k = 0
        for split, count in (("train", n), ("val", 2), ("test", 2)):
            for cls in ("spot", "clear"):
                for _ in range(count):
                    k += 1
                    zf.writestr(f"{split}/{cls}/{k}.png", _img(k, cls == "spot"))
    return buf.getvalue()


@pytest.fixture
def immediate(rt):
    jobs.queue(rt, immediate=True)
    yield
    jobs.queue(rt, immediate=False)


def test_classification_lifecycle(rt, make_user, immediate):
    tech, doc, admin = make_user("technician"), make_user("doctor"), make_user("admin")
    proj = projects.create_project(tech, "Spots", "classification", ["clear", "spot"], "classifier-spots")
    rep = projects.import_dataset(tech, proj.id, "spots.zip", class_zip())
    assert rep.accepted == 20 and rep.label_format == "folders"
    assert projects.list_projects(tech)[0].images == 20
    counts = datasets.class_counts(tech, proj.id)
    assert counts["train"] == {"spot": 6, "clear": 6} and counts["test"] == {"spot": 2, "clear": 2}

    # two images labelled through the service layer; one approved by a doctor, one left pending
    with rt.session() as s:
        ids = [i.id for i in s.exec(select(Image).where(Image.project_id == proj.id, Image.split == "train")
                                    .order_by(Image.id)).all()]
    annotate.save(tech, ids[0], [], "spot")
    annotate.save(tech, ids[1], [], "clear")
    annotate.review(doc, ids[0], True, "ok")
    with pytest.raises(AccessDenied):
        annotate.review(tech, ids[1], True)
    _, examples = training.project_examples(proj.id)
    train_ids = {e.image_id for e in examples if e.split == "train"}
    assert ids[0] in train_ids and ids[1] not in train_ids  # pending annotations do not train
    assert len(train_ids) == 11

    with pytest.raises(AccessDenied):
        training.start_training(tech, proj.id, epochs=1)
    job = training.start_training(doc, proj.id, epochs=1, fine_tune=False, size=32, batch=8)
    job = training.get_training_job(doc, job.id)
    assert job.status == "finished", job.message
    assert job.epoch == 1 and job.history[0]["train_loss"] > 0 and job.version_id
    assert job.metrics["test"]["n"] == 4 and 0.0 <= job.metrics["test"]["acc"] <= 1.0
    with rt.session() as s:
        v1 = s.get(ModelVersion, job.version_id)
        assert v1.task == "classifier-spots" and not v1.deployed and len(v1.sha256) == 64
        assert sorted(i for i, _ in v1.params["training_data"]) == sorted(train_ids)
        assert v1.params["epochs"] == 1 and v1.params["fine_tune"] is False and v1.created_by == doc.user_id
        assert v1.metrics["evaluations"][0]["metrics"]["n"] == 4

    with pytest.raises(AccessDenied):
        datasets.deploy(tech, v1.id)
    datasets.deploy(doc, v1.id)
    first = explain.analyze(doc, ids[2], task="classifier-spots", mc_passes=0)
    assert first.model.endswith(v1.version)

    # fine-tune from the deployed version; the new version is what inference uses once deployed
    job2 = training.get_training_job(doc, training.start_training(doc, proj.id, epochs=1, fine_tune=True, batch=8).id)
    assert job2.status == "finished", job2.message
    with rt.session() as s:
        v2 = s.get(ModelVersion, job2.version_id)
        assert v2.params["fine_tune"] is True and v2.params["size"] == 32 and "#%d" % v1.id in v2.params["fine_tuned_from"]
    datasets.deploy(admin, v2.id)
    second = explain.analyze(doc, ids[2], task="classifier-spots", mc_passes=0)
    assert second.model.endswith(v2.version) and second.model != first.model
    datasets.deploy(doc, v1.id)  # rollback
    assert explain.analyze(doc, ids[2], task="classifier-spots", mc_passes=0).model.endswith(v1.version)
    ens = explain.analyze(doc, ids[2], task="classifier-spots", mc_passes=4, ensemble=True)
    assert "+ 1 more version" in ens.model and abs(sum(ens.probabilities.values()) - 1) < 1e-5
    with rt.session() as s:
        from core.db.models import AIResult

        assert s.get(AIResult, ens.result_id).settings["ensemble"] == [v2.id]

    # evaluation job stored with the version and charted across versions
    ev = training.get_training_job(doc, training.start_evaluation(doc, v2.id, proj.id).id)
    assert ev.status == "finished" and ev.metrics["n"] == 4
    hist = training.evaluation_history(doc, "classifier-spots")
    assert [h["version_id"] for h in hist] == [v1.id, v2.id, v2.id]

    # a changed weights file is refused at deploy and at load
    with rt.session() as s:
        path = s.get(ModelVersion, v2.id).path
    with open(path, "ab") as fh:
        fh.write(b"x")
    from core.errors import IntegrityError

    with pytest.raises(IntegrityError):
        datasets.deploy(doc, v2.id)

    # export of the project's labels
    name, data = datasets.export_labels(tech, "csv", project_id=proj.id)
    assert name == "labels.csv" and data.decode().count("\n") == 21


def test_cancel_queued_and_running(rt, make_user):
    tech, doc = make_user("technician"), make_user("doctor")
    proj = projects.create_project(tech, "Cancel me", "classification", ["clear", "spot"])
    projects.import_dataset(tech, proj.id, "c.zip", class_zip(8))
    jobs.queue(rt, immediate=False)  # nobody consumes: the job stays queued
    queued = training.start_training(doc, proj.id, epochs=2, size=32)
    assert queued.status == "queued"
    with pytest.raises(Conflict):
        training.start_training(doc, proj.id, epochs=2)  # one job per project at a time
    assert training.cancel_job(doc, queued.id).status == "cancelled"
    training.run_training(queued.id)  # a late delivery of the cancelled task does nothing
    assert training.get_training_job(doc, queued.id).status == "cancelled"
    with pytest.raises(Conflict):
        training.cancel_job(doc, queued.id)

    running = training.start_training(doc, proj.id, epochs=200, size=32, batch=4)
    t = threading.Thread(target=training.run_training, args=(running.id,))  # what the worker runs
    t.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            info = training.get_training_job(doc, running.id)
            if info.status == "running" and info.epoch >= 1:
                break
            time.sleep(0.2)
        assert info.status == "running" and info.epoch >= 1 and 0 < info.progress < 1
        assert training.cancel_job(doc, running.id).status == "cancelling"
    finally:
        t.join(timeout=120)
    info = training.get_training_job(doc, running.id)
    assert info.status == "cancelled" and info.version_id is None
    with rt.session() as s:
        assert s.exec(select(ModelVersion).where(ModelVersion.task == proj.model_task)).all() == []


def test_dead_worker_leaves_job_failed(rt, make_user):
    tech, doc = make_user("technician"), make_user("doctor")
    proj = projects.create_project(tech, "Crash", "classification", ["clear", "spot"])
    projects.import_dataset(tech, proj.id, "c.zip", class_zip(2))
    jobs.queue(rt, immediate=False)
    job = training.start_training(doc, proj.id, epochs=1, size=32)
    assert training._claim(job.id) is not None  # a worker claimed it, then died
    with rt.session() as s:
        row = s.get(Job, job.id)
        row.result = {**row.result, "heartbeat": time.time() - training.STALE_SECONDS - 5}
        s.add(row)
    assert training.recover_jobs() >= 1
    info = training.get_training_job(doc, job.id)
    assert info.status == "failed" and "stopped" in info.message and info.version_id is None


def _yolo_zip(bad: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("classes.txt", "lesion\nmarker\n")
        for k in range(4):
            zf.writestr(f"images/{k}.png", _img(50 + k, True, 64))
            good = "0 0.5 0.5 0.25 0.25\n1 0.1 0.1 0.05 0.05 0.15 0.1 0.1 0.2\n"
            zf.writestr(f"labels/{k}.txt", bad if bad and k == 3 else good)
    return buf.getvalue()


def _coco_zip(box=(8, 8, 20, 16)) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.png", _img(70, True, 64))
        zf.writestr("annotations.json", json.dumps({
            "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64}],
            "categories": [{"id": 3, "name": "lesion"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": list(box)}]}))
    return buf.getvalue()


def _state(rt) -> tuple:
    with rt.session() as s:
        return (len(s.exec(select(Image)).all()), len(s.exec(select(Annotation)).all()),
                sorted(p.name for p in rt.settings.data_dir.rglob("*") if p.is_file() and "blobs" in str(p)))


def test_yolo_and_coco_import_and_malformed_files_change_nothing(rt, make_user):
    tech = make_user("technician")
    proj = projects.create_project(tech, "Boxes", "detection", ["lesion", "marker"])
    before = _state(rt)
    for bad in ["0 0.5 0.5\n", "7 0.5 0.5 0.2 0.2\n", "0 1.7 0.5 0.2 0.2\n", "x y z w h\n", "0 0.5 0.5 0 0.2\n"]:
        with pytest.raises(InvalidImage, match="3.txt line 1"):
            projects.import_dataset(tech, proj.id, "bad.zip", _yolo_zip(bad))
        assert _state(rt) == before
    with pytest.raises(InvalidImage):
        projects.import_dataset(tech, proj.id, "bad.zip", _coco_zip((50, 50, 40, 40)))  # outside the image
    with pytest.raises(InvalidImage, match="classes.txt"):
        projects.import_dataset(tech, proj.id, "bad.zip", _yolo_zip().replace(b"classes.txt", b"classez.txt"))
    with pytest.raises(InvalidImage):
        projects.import_dataset(tech, proj.id, "bad.zip", b"not a zip")
    assert _state(rt) == before

    rep = projects.import_dataset(tech, proj.id, "boxes.zip", _yolo_zip())
    assert rep.label_format == "yolo" and rep.accepted == 4 and rep.shapes == 8
    with rt.session() as s:
        img = s.exec(select(Image).where(Image.project_id == proj.id).order_by(Image.id)).first()
    got = annotate.get(tech, img.id)
    assert got.status == "approved"
    rect = next(sh for sh in got.shapes if sh["kind"] == "rect")
    assert rect["label"] == "lesion" and rect["box"] == [24, 24, 40, 40]
    poly = next(sh for sh in got.shapes if sh["kind"] == "polygon")
    assert poly["label"] == "marker" and poly["points"][0] == [6, 6]

    coco_proj = projects.create_project(tech, "Coco", "detection", ["lesion"])
    rep = projects.import_dataset(tech, coco_proj.id, "coco.zip", _coco_zip())
    assert rep.label_format == "coco" and rep.shapes == 1
    with rt.session() as s:
        img = s.exec(select(Image).where(Image.project_id == coco_proj.id)).one()
    assert annotate.get(tech, img.id).shapes[0]["box"] == [8, 8, 28, 24]
    other = projects.create_project(tech, "Markers", "detection", ["marker"])
    before = _state(rt)
    with pytest.raises(ValidationError, match="lesion"):
        projects.import_dataset(tech, other.id, "c.zip", _coco_zip())  # a class the project lacks
    assert _state(rt) == before


def test_segmentation_version_from_polygons(rt, make_user, immediate):
    tech, doc = make_user("technician"), make_user("doctor")
    proj = projects.create_project(tech, "Masks", "segmentation", ["lesion"], "segmenter-lesion")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k in range(6):
            zf.writestr(f"{k}.png", _img(80 + k, True, 64))
    rep = projects.import_dataset(tech, proj.id, "m.zip", buf.getvalue())
    for r in rep.results:
        annotate.save(tech, r.image_id, [{"kind": "polygon", "label": "lesion", "points": [[10, 10], [40, 12], [30, 40]]}])
        annotate.review(doc, r.image_id, True)
    datasets.assign_splits(tech, (0.5, 0.17, 0.33), seed=1, project_id=proj.id)
    job = training.get_training_job(doc, training.start_training(doc, proj.id, epochs=1, size=32, batch=2).id)
    assert job.status == "finished", job.message
    assert 0.0 <= job.metrics["test"]["dice"] <= 1.0
    with rt.session() as s:
        mv = s.get(ModelVersion, job.version_id)
    assert mv.task == "segmenter-lesion" and mv.params["arch"] == "residual-unet"


def test_refusals(rt, make_user):
    tech, doc = make_user("technician"), make_user("doctor")
    with pytest.raises(ValidationError):
        projects.create_project(tech, "x", "nonsense", ["a"])
    with pytest.raises(ValidationError):
        projects.create_project(tech, "One class", "classification", ["a"])
    p = projects.create_project(tech, "Empty", "classification", ["a", "b"])
    with pytest.raises(Conflict):
        projects.create_project(tech, "Empty", "classification", ["a", "b"])
    with pytest.raises(ValidationError):
        training.start_training(doc, p.id, epochs=1)  # no approved images
    with pytest.raises(ValidationError):
        training.start_training(doc, p.id, epochs=0)
    with pytest.raises(AccessDenied):
        projects.create_project(doc.__class__(0, "nobody", "admin"), "Z", "classification", ["a", "b"])


def test_detector_fine_tuned_from_the_deployed_one_offline(sqlite_rt, tmp_path, monkeypatch):
    """A YOLO version trained on the queue from a project's boxes, starting from the deployed
    detector, without a single network connection."""
    import socket

    from core.ml import yolo_env
    from core.services import users
    from tests.conftest import PASSWORD, admin_actor, deploy_test_model

    rt = sqlite_rt
    adm = admin_actor(rt)
    tech = users.create_user(adm, "tdet", "T", "technician", PASSWORD, must_change_password=False).actor()
    doc = users.create_user(adm, "ddet", "D", "doctor", PASSWORD, must_change_password=False).actor()
    yolo_env.configure(tmp_path / "yolo")
    base = tmp_path / "base.pt"
    yolo_env.import_yolo()("yolov8n.yaml").save(str(base))
    v0 = deploy_test_model(rt, "detector-test", base, "tiny-yolo")
    proj = projects.create_project(tech, "Text", "detection", ["lesion", "marker"], "detector-test")
    projects.import_dataset(tech, proj.id, "boxes.zip", _yolo_zip())
    datasets.assign_splits(tech, (0.5, 0.5, 0.0), seed=0, project_id=proj.id)

    def no_network(*args, **kwargs):
        raise AssertionError("training tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    jobs.queue(rt, immediate=True)
    try:
        job = training.start_training(doc, proj.id, epochs=1, size=64, batch=2, fine_tune=True)
    finally:
        jobs.queue(rt, immediate=False)
    job = training.get_training_job(doc, job.id)
    assert job.status == "finished", job.message
    assert job.history and job.history[-1]["epoch"] == 1
    with rt.session() as s:
        mv = s.get(ModelVersion, job.version_id)
    assert mv.task == "detector-test" and mv.params["fine_tune"] is True and f"#{v0.id}" in mv.params["fine_tuned_from"]
    datasets.deploy(doc, mv.id)
    from core.ml import detector
    from core.services.models import deployed_weights

    path, sha = deployed_weights("detector-test")
    assert path == mv.path and detector.load(path, sha) is not None
