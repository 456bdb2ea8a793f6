"""Explain and review through the service layer, with a small classifier built and registered in
the test (no shipped weights needed)."""

from __future__ import annotations

import json

import pytest
import torch

from core.errors import AccessDenied, Conflict, ValidationError
from core.ml import classifier
from core.services import explain, ingest, models
from tests.fixtures import dicom_bytes, png_bytes


@pytest.fixture
def deployed_classifier(rt, tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = classifier.build("resnet18", num_classes=2, dropout=0.5)
    path = tmp_path / "cxr-tiny.pt"
    torch.save({"arch": "resnet18", "classes": ("NORMAL", "PNEUMONIA"), "size": 64, "state_dict": model.state_dict()}, path)
    from tests.conftest import deploy_test_model

    deploy_test_model(rt, "classifier-cxr", path, "tiny-cxr")
    yield path
    classifier.load.cache_clear()


def test_analyze_stores_everything_and_review_loop(rt, make_user, deployed_classifier):
    tech, doc = make_user("technician"), make_user("doctor")
    ids = [r.image_id for r in ingest.ingest_files(tech, [("a.png", png_bytes(120, 100, seed=1)),
                                                         ("b.dcm", dicom_bytes(96, 96, seed=2))]).results]
    out = [explain.analyze(doc, i, mc_passes=6) for i in ids]
    a = out[0]
    assert set(a.probabilities) == {"NORMAL", "PNEUMONIA"} and abs(sum(a.probabilities.values()) - 1) < 1e-5
    assert a.triage in ("critical", "urgent", "routine", "normal") and "Triage priority" in a.findings
    assert a.view.shape == (64, 64) and 0 <= a.epistemic <= a.uncertainty
    queue = explain.review_queue(doc)
    assert {r.id for r in queue} == {o.result_id for o in out}
    assert all(r.model.startswith("tiny-cxr") for r in queue)
    with pytest.raises(AccessDenied):
        explain.review(tech, a.result_id, "approved")  # technicians cannot review
    r = explain.review(doc, a.result_id, "corrected", "PNEUMONIA", "consolidation right lower lobe")
    assert r.review_status == "corrected" and r.corrected_label == "PNEUMONIA"
    with pytest.raises(Conflict):
        explain.review(doc, a.result_id, "approved")
    with pytest.raises(ValidationError):
        explain.review(doc, out[1].result_id, "corrected")
    explain.review(doc, out[1].result_id, "rejected", comment="motion artefact")
    assert explain.review_queue(doc) == []
    from core.db.models import Image

    with rt.session() as s:
        assert s.get(Image, ids[0]).label == "PNEUMONIA"  # the correction became a training label
    hist = explain.results(doc, image_id=ids[0])
    assert len(hist) == 1 and hist[0].review_comment.startswith("consolidation")
    data = json.loads(explain.export(doc, "json"))
    assert {d["review_status"] for d in data} == {"corrected", "rejected"}
    assert explain.export(doc, "csv").splitlines()[0].startswith("id,image_id,task")


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "eigencam", "layercam"])
def test_explain_methods(rt, make_user, deployed_classifier, method):
    tech, doc = make_user("technician"), make_user("doctor")
    image_id = ingest.ingest_files(tech, [("c.png", png_bytes(80, 80, seed=3))]).results[0].image_id
    e = explain.explain(doc, image_id, method=method, target="PNEUMONIA")
    assert e.heat.shape == (64, 64) and 0 <= e.heat.min() and e.heat.max() <= 1
    assert e.target == "PNEUMONIA" and e.layer in e.layers and e.layer != e.layers[0]  # 64 px: layer4's map is 2x2
    e2 = explain.explain(doc, image_id, method=method, layer=e.layers[2])
    assert e2.layer == e.layers[2]


def test_triage_thresholds_are_admin_settings(rt, make_user, admin, deployed_classifier):
    with pytest.raises(ValidationError):
        explain.set_thresholds(admin, 0.5, 0.7, 0.9, 0.5)
    explain.set_thresholds(admin, 0.02, 0.01, 0.0, 1.0)  # everything becomes critical
    tech, doc = make_user("technician"), make_user("doctor")
    image_id = ingest.ingest_files(tech, [("d.png", png_bytes(64, 64, seed=4))]).results[0].image_id
    assert explain.analyze(doc, image_id, mc_passes=0).triage == "critical"


def test_modality_picks_the_classifier_and_segmenter_gives_area(rt, make_user, deployed_classifier, tmp_path):
    from core.ml import segmenter
    from tests.conftest import deploy_test_model

    torch.manual_seed(1)
    us = classifier.build("resnet18", num_classes=3, dropout=0.5)
    us_path = tmp_path / "us-tiny.pt"
    torch.save({"arch": "resnet18", "classes": ("malignant", "normal", "benign"), "size": 64,
                "state_dict": classifier.compact_state_dict(us)}, us_path)  # float16 as shipped
    deploy_test_model(rt, "classifier-us", us_path, "tiny-us")
    seg_path = tmp_path / "seg-tiny.pt"
    torch.save({"variant": "unet", "channels": (8, 16, 32), "size": 64,
                "state_dict": segmenter.build("unet", (8, 16, 32)).state_dict()}, seg_path)
    deploy_test_model(rt, "segmenter-lung", seg_path, "tiny-seg")
    tech, doc = make_user("technician"), make_user("doctor")
    ids = [r.image_id for r in ingest.ingest_files(tech, [("a.png", png_bytes(80, 80, seed=3))], modality="US").results]
    ids += [r.image_id for r in ingest.ingest_files(tech, [("c.dcm", dicom_bytes(64, 64, seed=4, modality="CR"))]).results]
    assert explain.classifier_tasks(doc) == ["classifier-cxr", "classifier-us"]
    a_us = explain.analyze(doc, ids[0], mc_passes=0)
    a_cr = explain.analyze(doc, ids[1], mc_passes=0)
    assert a_us.model.startswith("tiny-us") and set(a_us.probabilities) == {"malignant", "normal", "benign"}
    assert a_cr.model.startswith("tiny-cxr")
    assert explain.analyze(doc, ids[0], task="classifier-cxr", mc_passes=0).model.startswith("tiny-cxr")  # doctor's pick
    e = explain.explain(doc, ids[0], method="integrated-gradients")
    assert e.heat.shape == (64, 64) and 0 <= e.heat.min() and e.heat.max() <= 1
    sv = explain.segment(doc, ids[1])
    assert sv.mask.shape == (64, 64) and sv.view.shape == (64, 64) and sv.area_px == int(sv.mask.sum())
    with pytest.raises(AccessDenied):
        explain.segment(tech, ids[1])
    segmenter.load.cache_clear()


def test_batch_analysis_on_the_queue(rt, make_user, deployed_classifier):
    from core import jobs

    tech, doc = make_user("technician"), make_user("doctor")
    ids = [r.image_id for r in ingest.ingest_files(tech, [(f"{k}.png", png_bytes(70, 70, seed=20 + k)) for k in range(3)]).results]
    with pytest.raises(AccessDenied):
        jobs.enqueue_analyze(tech, ids)
    jobs.queue(rt, immediate=True)
    try:
        info = jobs.enqueue_analyze(doc, ids + ids[:1], mc_passes=3)
    finally:
        jobs.queue(rt, immediate=False)
    info = jobs.get_job(doc, info.id)
    assert info.kind == "analyze" and info.status == "finished" and info.done == 3 and info.progress == 1.0
    assert "3 analysed" in info.message
    rows = explain.results(doc)
    assert sorted(r.image_id for r in rows) == sorted(ids) and all(r.review_status == "pending" for r in rows)
    jobs._analyze_one(info.id, ids[0])  # a duplicate delivery does not analyse twice
    assert len(explain.results(doc)) == 3
    assert [j.id for j in jobs.list_jobs(doc, kind="analyze")] == [info.id] and jobs.list_jobs(doc) == []
