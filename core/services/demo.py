"""A first run that shows the product: the demo set shipped in assets/demo/ (real public images with fake
patient text burned in; assets/demo/README.md) loaded as one demo patient, so a newcomer can walk upload
-> protect -> restore -> explain -> annotate at once. Demo records are marked (patient code DEMO-…, a
settings row listing them) and removable; loading twice adds nothing."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import delete, select

from core import audit
from core.config import PROJECT_ROOT
from core.db.models import AIResult, Annotation, Image, Patient, Region, Setting, utcnow
from core.errors import NotFound
from core.runtime import get_runtime
from core.security import Actor, Permission, service
from core.services import ingest

DEMO_DIR = PROJECT_ROOT / "assets" / "demo"
DEMO_KEY = "demo"
DEMO_CODE = "DEMO-PATIENT-0001"
MODALITIES = {"demo-chest-1.png": "CR", "demo-chest-2.png": "CR", "demo-breast-us.png": "US"}


@dataclass(frozen=True)
class DemoState:
    loaded: bool
    patient_id: int | None
    image_ids: list[int]


def _state(s) -> dict:
    row = s.get(Setting, DEMO_KEY)
    return dict(row.value) if row is not None and isinstance(row.value, dict) else {}


@service(Permission.SETTINGS_MANAGE)
def demo_state(actor: Actor) -> DemoState:
    with get_runtime().session() as s:
        st = _state(s)
    return DemoState(bool(st.get("image_ids")), st.get("patient_id"), list(st.get("image_ids", [])))


@service(Permission.SETTINGS_MANAGE)
def load_demo(actor: Actor) -> DemoState:
    """Load the demo set (idempotent: a loaded demo is left as it is)."""
    rt = get_runtime()
    files = sorted(p for p in DEMO_DIR.glob("demo-*") if p.suffix in (".png", ".dcm"))
    if not files:
        raise NotFound("The demo set is missing from assets/demo (run scripts/make_demo.py).")
    with rt.session() as s:
        st = _state(s)
        if st.get("image_ids"):
            return DemoState(True, st.get("patient_id"), st["image_ids"])
        patient = s.exec(select(Patient).where(Patient.patient_code == DEMO_CODE)).first()
        if patient is None:
            patient = Patient(patient_code=DEMO_CODE, name="Demo patient (not a real person)",
                              notes="MedShield demo data: fake names, IDs and dates burned into public images. "
                                    "Remove with `python -m core.cli demo --remove` or the admin's Home page.",
                              created_by=actor.user_id)
            s.add(patient)
            s.flush()
        patient_id = patient.id
    ids = []
    for p in files:
        # the demo's own permission was checked; its images are uploaded as the acting admin on purpose
        rep = ingest.ingest_files.__wrapped__(actor, [(f"demo/{p.name}", p.read_bytes())], patient_id=patient_id,
                                              modality=MODALITIES.get(p.name))
        ids += [r.image_id for r in rep.results if r.image_id is not None]
    with rt.session() as s:
        row = s.get(Setting, DEMO_KEY) or Setting(key=DEMO_KEY)
        row.value, row.updated_by, row.updated_at = {"patient_id": patient_id, "image_ids": ids}, actor.user_id, utcnow()
        s.add(row)
    audit.record(rt.engine, actor.username, actor.role, "demo.load", "success", object_type="patient",
                 object_id=patient_id, detail=f"images={len(ids)}")
    return DemoState(True, patient_id, ids)


@service(Permission.SETTINGS_MANAGE)
def remove_demo(actor: Actor) -> int:
    """Remove every demo record: its images (stored files, sealed regions, annotations, AI results) and
    the demo patient. Returns how many images went."""
    rt = get_runtime()
    with rt.session() as s:
        st = _state(s)
        ids = list(st.get("image_ids", []))
        keys = set()
        for img in s.exec(select(Image).where(Image.id.in_(ids))).all() if ids else []:  # type: ignore[union-attr]
            keys |= {k for k in (img.blob_key, img.thumb_key, img.sha256) if k}
        if ids:
            for model in (Region, Annotation, AIResult):
                s.exec(delete(model).where(model.image_id.in_(ids)))  # type: ignore[attr-defined]
            s.exec(delete(Image).where(Image.id.in_(ids)))  # type: ignore[attr-defined]
        if st.get("patient_id"):
            s.exec(delete(Patient).where(Patient.id == st["patient_id"], Patient.patient_code == DEMO_CODE))  # type: ignore[arg-type]
        row = s.get(Setting, DEMO_KEY)
        if row is not None:
            s.delete(row)
    with rt.session() as s:  # a blob another (real) image still uses stays
        used = set(s.exec(select(Image.blob_key)).all()) | set(s.exec(select(Image.thumb_key)).all())
    for k in keys - used:
        rt.store.delete(k)
    audit.record(rt.engine, actor.username, actor.role, "demo.remove", "success", object_type="patient",
                 object_id=st.get("patient_id"), detail=f"images={len(ids)}")
    return len(ids)
