from __future__ import annotations

import io
import json
import zipfile

import pytest
import torch

from core.errors import AccessDenied, IntegrityError
from core.services import annotate, datasets, ingest, models
from tests.fixtures import png_bytes, zip_bytes


def test_splits_are_stratified_and_repeatable(rt, make_user):
    tech = make_user("technician")
    entries = {f"{c}/{i}.png": png_bytes(32, 32, seed=hash((c, i)) % 10_000) for c in ("A", "B") for i in range(20)}
    ingest.ingest_files(tech, [("ds.zip", zip_bytes(entries))])
    counts = datasets.assign_splits(tech, (0.5, 0.25, 0.25), seed=3)
    assert counts["train"] == {"A": 10, "B": 10} and counts["val"] == {"A": 5, "B": 5} and counts["test"] == {"A": 5, "B": 5}


def test_export_formats(rt, make_user):
    tech = make_user("technician")
    ids = [r.image_id for r in ingest.ingest_files(tech, [(f"{i}.png", png_bytes(100, 120, seed=60 + i)) for i in range(2)]).results]
    annotate.save(tech, ids[0], [{"kind": "rect", "label": "nodule", "box": [10, 20, 30, 50]},
                                 {"kind": "polygon", "label": "lung", "points": [[40, 40], [80, 40], [60, 90]]}], "PNEUMONIA")
    annotate.save(tech, ids[1], [], "NORMAL")
    name, data = datasets.export_labels(tech, "csv")
    assert name == "labels.csv" and data.decode().count("\n") == 5  # header, 2 label rows, 2 shapes
    js = json.loads(datasets.export_labels(tech, "json")[1])
    assert {d["label"] for d in js} == {"PNEUMONIA", "NORMAL"}
    z = zipfile.ZipFile(io.BytesIO(datasets.export_labels(tech, "yolo")[1]))
    assert z.read("classes.txt").decode().split() == ["lung", "nodule"]
    line = z.read(f"labels/unassigned/{ids[0]}.txt").decode().splitlines()[0].split()
    assert line[0] == "1" and float(line[1]) == pytest.approx(20 / 120, abs=1e-5)
    coco = json.loads(zipfile.ZipFile(io.BytesIO(datasets.export_labels(tech, "coco")[1])).read("annotations.json"))
    assert len(coco["annotations"]) == 2 and coco["annotations"][0]["bbox"] == [10, 20, 20, 30]
    masks = zipfile.ZipFile(io.BytesIO(datasets.export_labels(tech, "masks")[1]))
    assert sorted(masks.namelist()) == [f"masks/{ids[0]}_lung.png", f"masks/{ids[0]}_nodule.png"]
    assert datasets.export_labels(tech, "json", approved_only=True)[1] == b"[]"


def test_deploy_and_rollback_check_the_checksum(rt, make_user, admin, tmp_path, monkeypatch):
    from core.ml import classifier

    paths = []
    for n in range(2):
        torch.manual_seed(n)
        p = tmp_path / f"v{n}.pt"
        torch.save({"arch": "resnet18", "classes": ("A", "B"), "size": 64,
                    "state_dict": classifier.build("resnet18", 2).state_dict()}, p)
        paths.append(p)
        monkeypatch.setitem(models.SHIPPED, "classifier-cxr", (str(p), str(tmp_path / "x.json"), f"tiny{n}"))
        models.register_shipped(rt)
    shas = {__import__("core.hashing", fromlist=["x"]).file_sha256(p) for p in paths}
    versions = [m for m in models.list_models(admin) if m.task == "classifier-cxr" and m.sha256 in shas]
    assert len(versions) == 2
    doc = make_user("doctor")
    datasets.deploy(doc, versions[1].id)
    assert models.deployed("classifier-cxr").id == versions[1].id
    datasets.deploy(admin, versions[0].id)  # rollback
    assert models.deployed("classifier-cxr").id == versions[0].id
    with pytest.raises(AccessDenied):
        datasets.deploy(make_user("technician"), versions[1].id)
    paths[1].write_bytes(b"tampered")
    with pytest.raises(IntegrityError):
        datasets.deploy(doc, versions[1].id)
