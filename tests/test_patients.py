from __future__ import annotations

from datetime import date, timedelta

import pytest

from core.errors import Conflict, NotFound, ValidationError
from core.services import ingest, patients
from tests.fixtures import dicom_bytes, png_bytes


def test_create_edit_and_validate(rt, make_user):
    tech = make_user("technician")
    p = patients.create_patient(tech, "H-100", "Alice Smith", 54, "f", "allergic to iodine")
    assert (p.patient_code, p.sex, p.age) == ("H-100", "F", 54)
    with pytest.raises(Conflict):
        patients.create_patient(tech, "H-100", "Someone Else")
    with pytest.raises(ValidationError):
        patients.create_patient(tech, "", "No Id")
    with pytest.raises(ValidationError):
        patients.create_patient(tech, "H-2", "Too Old", 200)
    doc = make_user("doctor")
    q = patients.update_patient(doc, p.id, "H-100", "Alice B. Smith", 55, "F", "")
    assert q.name == "Alice B. Smith" and q.age == 55 and q.notes == ""
    with pytest.raises(NotFound):
        patients.update_patient(doc, 424242, "X")


def test_search_and_filter(rt, make_user):
    tech = make_user("technician")
    a = patients.create_patient(tech, "H-1", "Alice Smith")
    b = patients.create_patient(tech, "H-2", "Bob Jones")
    patients.create_patient(tech, "Z-9", "Carol Smithers")
    ingest.ingest_files(tech, [("a.png", png_bytes(seed=1))], patient_id=a.id, modality="CR")
    ingest.ingest_files(tech, [("b.dcm", dicom_bytes(modality="MR", patient_id="H-2"))])
    codes = lambda res: sorted(p.patient_code for p in res)  # noqa: E731
    assert codes(patients.search_patients(tech, "smith")) == ["H-1", "Z-9"]
    assert codes(patients.search_patients(tech, "h-")) == ["H-1", "H-2"]
    assert codes(patients.search_patients(tech, modality="MR")) == ["H-2"]
    assert codes(patients.search_patients(tech, modality="CR")) == ["H-1"]
    today = date.today()
    assert codes(patients.search_patients(tech, date_from=today - timedelta(days=1), date_to=today + timedelta(days=1))) == ["H-1", "H-2"]
    assert codes(patients.search_patients(tech, date_from=today + timedelta(days=2))) == []
    assert codes(patients.search_patients(tech, status="uploaded")) == ["H-1", "H-2"]
    assert codes(patients.search_patients(tech, status="protected")) == []
    info = patients.get_patient(tech, b.id)
    assert info.image_count == 1 and info.modalities == ("MR",)


def test_images_and_thumbnails(rt, make_user):
    tech = make_user("technician")
    p = patients.create_patient(tech, "H-5", "Dan")
    ingest.ingest_files(tech, [("a.png", png_bytes(h=600, w=900, seed=1)), ("b.dcm", dicom_bytes(seed=2))], patient_id=p.id)
    imgs = patients.patient_images(make_user("doctor"), p.id)
    assert len(imgs) == 2
    from PIL import Image
    import io

    thumb = Image.open(io.BytesIO(patients.image_thumbnail(tech, imgs[-1].id)))
    assert max(thumb.size) == 256 and thumb.format == "PNG"
    with pytest.raises(NotFound):
        patients.image_thumbnail(tech, 987654)
