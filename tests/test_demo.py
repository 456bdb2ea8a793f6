"""The first-run demo: loaded once as one marked demo patient, walked through protect and restore,
removed again without touching real data; the admin's page offers it on an empty system."""

from __future__ import annotations

import pytest
from sqlmodel import func, select

from core.db.models import Image, Patient
from core.errors import AccessDenied
from core.services import demo, ingest, protect, restore
from tests.conftest import ADMIN_PASSWORD, admin_actor
from tests.fixtures import png_bytes
from tests.test_app import app_rt, login  # noqa: F401  (fixture)


def test_load_walk_and_remove(rt, make_user):
    adm, tech, doc = admin_actor(rt), make_user("technician"), make_user("doctor")
    real = ingest.ingest_files(tech, [("real.png", png_bytes(64, 64, seed=1))]).results[0].image_id
    st = demo.load_demo(adm)
    assert len(st.image_ids) == 4 and demo.load_demo(adm).image_ids == st.image_ids  # idempotent
    with rt.session() as s:
        p = s.get(Patient, st.patient_id)
        assert p.patient_code.startswith("DEMO-") and "not a real person" in p.name
        assert {i.modality for i in s.exec(select(Image).where(Image.id.in_(st.image_ids))).all()} == {"CR", "US", "CT"}
    ct = next(i for i in st.image_ids if protect.stored_image(i).source_format == "dicom")
    res = protect.protect_image(tech, ct, [], use_detector=True)
    assert res.regions >= 2  # the burned-in name and ID
    assert restore.restore_image(doc, ct).verified
    with pytest.raises(AccessDenied):
        demo.load_demo(tech)
    assert demo.remove_demo(adm) == 4
    with rt.session() as s:
        assert s.exec(select(func.count()).select_from(Image)).one() == 1 and s.get(Image, real) is not None
        assert s.get(Patient, st.patient_id) is None
    assert not demo.demo_state(adm).loaded


def test_cli_demo(rt, make_user, monkeypatch, capsys):
    from core import cli

    monkeypatch.setenv("MEDSHIELD_PASSWORD", "admin-pass-123")
    assert cli.main(["demo", "--user", "admin"], configure=False) == 0
    assert "demo patient" in capsys.readouterr().out
    assert cli.main(["demo", "--user", "admin", "--remove"], configure=False) == 0
    assert "4 image(s)" in capsys.readouterr().out


def test_admin_page_offers_the_demo_on_an_empty_system(app_rt):
    at = login("admin", ADMIN_PASSWORD)
    [b for b in at.button if b.label == "Load demo data"][0].click().run()
    assert not at.exception, at.exception
    assert any("Demo patient loaded" in s.value for s in at.success)
    assert any(b.label == "Remove demo data" for b in at.button)
