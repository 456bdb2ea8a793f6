"""Every core service function x every role: the matrix is proven, not assumed."""

from __future__ import annotations

import pytest

import core.jobs  # noqa: F401
import core.services.account  # noqa: F401
import core.services.annotate  # noqa: F401
import core.services.datasets  # noqa: F401  (register all services)
import core.services.audit_log  # noqa: F401
import core.services.ingest  # noqa: F401
import core.services.explain  # noqa: F401
import core.services.keys  # noqa: F401
import core.services.models  # noqa: F401
import core.services.system  # noqa: F401
import core.services.patients  # noqa: F401
import core.services.protect  # noqa: F401
import core.services.restore  # noqa: F401
import core.services.users  # noqa: F401
import core.services.twofactor  # noqa: F401
import core.services.operations  # noqa: F401
import core.services.demo  # noqa: F401
import core.services.storage_admin  # noqa: F401
import core.services.pacs  # noqa: F401
import core.services.pacs_nodes  # noqa: F401
import core.services.projects  # noqa: F401
import core.services.training  # noqa: F401
from core.errors import AccessDenied, MedShieldError
from core.security import ROLES, SERVICE_REGISTRY, Actor
from tests.fixtures import png_bytes

T, D, A = "technician", "doctor", "admin"
# Expected: which roles may call each service. Written out by hand, independent of
# core.security.ROLE_PERMISSIONS, so a change there that widens access fails here.
EXPECTED: dict[str, set[str]] = {
    "core.services.account.my_history": {T, D, A},
    "core.services.users.change_own_password": {T, D, A},
    "core.services.users.list_users": {A},
    "core.services.users.create_user": {A},
    "core.services.users.set_active": {A},
    "core.services.users.set_role": {A},
    "core.services.users.unlock": {A},
    "core.services.users.reset_password": {A},
    "core.services.audit_log.search_events": {A},
    "core.services.audit_log.export_csv": {A},
    "core.services.audit_log.verify": {A},
    "core.services.ingest.ingest_files": {T},
    "core.services.patients.create_patient": {T, D},
    "core.services.patients.update_patient": {T, D},
    "core.services.patients.get_patient": {T, D},
    "core.services.patients.search_patients": {T, D},
    "core.services.patients.patient_images": {T, D},
    "core.services.patients.recent_images": {T, D},
    "core.services.patients.image_thumbnail": {T, D},
    "core.services.protect.protect_image": {T},
    "core.services.restore.restore_image": {D},
    "core.services.restore.download_restored": {D},
    "core.services.protect.protected_pixels": {T, D},
    "core.services.restore.record_download": {D},
    "core.services.restore.export_share": {D},
    "core.services.protect.protection_metrics": {D, A},
    "core.services.protect.detect_regions": {T},
    "core.services.protect.preview_file": {T},
    "core.services.account.share_keypair": {T, D, A},
    "core.services.demo.demo_state": {A},
    "core.services.demo.load_demo": {A},
    "core.services.demo.remove_demo": {A},
    "core.services.operations.health": {A},
    "core.services.operations.list_all_jobs": {A},
    "core.services.operations.cancel": {A},
    "core.services.operations.retry": {A},
    "core.services.operations.activity": {A},
    "core.services.storage_admin.migrate_store": {A},
    "core.services.storage_admin.sweep_orphans": {A},
    "core.services.pacs_nodes.list_nodes": {T, D, A},
    "core.services.pacs_nodes.save_node": {A},
    "core.services.pacs_nodes.delete_node": {A},
    "core.services.pacs_nodes.test_node": {A},
    "core.services.pacs.find_studies": {T},
    "core.services.pacs.find_series": {T},
    "core.services.pacs.pull_series": {T},
    "core.services.pacs.get_pull": {T},
    "core.services.pacs.push_images": {T, D},
    "core.services.models.model_card": {A},
    "core.services.twofactor.status": {T, D, A},
    "core.services.twofactor.begin_enrolment": {T, D, A},
    "core.services.twofactor.confirm_enrolment": {T, D, A},
    "core.services.twofactor.new_recovery_codes": {T, D, A},
    "core.services.twofactor.disable": {T, D, A},
    "core.services.twofactor.reset": {A},
    "core.services.twofactor.set_required_roles": {A},
    "core.services.protect.protected_file": {T, D},
    "core.services.protect.sealed_regions": {T, D},
    "core.jobs.enqueue_protect": {T},
    "core.jobs.get_job": {T, D},
    "core.jobs.list_jobs": {T, D},
    "core.jobs.enqueue_analyze": {D},
    "core.services.models.list_models": {D, A},
    "core.services.system.system_status": {A},
    "core.services.explain.analyze": {D},
    "core.services.explain.explain": {D},
    "core.services.explain.review_queue": {D},
    "core.services.explain.review": {D},
    "core.services.explain.results": {D},
    "core.services.explain.export": {D},
    "core.services.explain.set_thresholds": {A},
    "core.services.explain.classifier_tasks": {D},
    "core.services.explain.segment": {D},
    "core.services.annotate.save": {T, D},
    "core.services.annotate.get": {T, D},
    "core.services.annotate.review": {D},
    "core.services.annotate.next_image": {T, D},
    "core.services.annotate.prelabel": {T, D},
    "core.services.datasets.assign_splits": {T, D},
    "core.services.datasets.class_counts": {T, D},
    "core.services.datasets.export_labels": {T, D},
    "core.services.datasets.deploy": {D, A},
    "core.services.patients.list_images": {T, D},
    "core.services.keys.key_status": {A},
    "core.services.keys.rotate_master_key": {A},
    "core.services.projects.create_project": {T, D},
    "core.services.projects.list_projects": {T, D},
    "core.services.projects.list_projects_for_training": {D, A},
    "core.services.projects.add_images": {T, D},
    "core.services.projects.import_dataset": {T},
    "core.services.training.start_training": {D, A},
    "core.services.training.start_evaluation": {D, A},
    "core.services.training.cancel_job": {D, A},
    "core.services.training.get_training_job": {D, A},
    "core.services.training.list_training_jobs": {D, A},
    "core.services.training.evaluation_history": {D, A},
}

ARGS: dict[str, tuple] = {
    "core.services.account.my_history": (),
    "core.services.users.change_own_password": ("wrong-password", "another-pass-1"),
    "core.services.users.list_users": (),
    "core.services.users.create_user": ("newuser", "New User", "doctor", "long-enough-1"),
    "core.services.users.set_active": (999_999, True),
    "core.services.users.set_role": (999_999, "doctor"),
    "core.services.users.unlock": (999_999,),
    "core.services.users.reset_password": (999_999,),
    "core.services.audit_log.search_events": (),
    "core.services.audit_log.export_csv": (),
    "core.services.audit_log.verify": (),
    "core.services.ingest.ingest_files": ([("a.png", png_bytes())],),
    "core.services.patients.create_patient": ("P-MATRIX",),
    "core.services.patients.update_patient": (999_999, "P-X"),
    "core.services.patients.get_patient": (999_999,),
    "core.services.patients.search_patients": (),
    "core.services.patients.patient_images": (999_999,),
    "core.services.patients.recent_images": (),
    "core.services.patients.image_thumbnail": (999_999,),
    "core.services.protect.protect_image": (999_999, []),
    "core.services.restore.restore_image": (999_999,),
    "core.services.restore.download_restored": (999_999, "png"),
    "core.services.protect.protected_pixels": (999_999,),
    "core.services.restore.record_download": (999_999, "png"),
    "core.services.protect.protection_metrics": (),
    "core.services.protect.detect_regions": (999_999,),
    "core.services.protect.preview_file": ("x.png", b"not an image"),
    "core.services.account.share_keypair": (),
    "core.services.demo.demo_state": (),
    "core.services.demo.load_demo": (),
    "core.services.demo.remove_demo": (),
    "core.services.operations.health": (),
    "core.services.operations.list_all_jobs": (),
    "core.services.operations.cancel": (999_999,),
    "core.services.operations.retry": (999_999,),
    "core.services.operations.activity": (),
    "core.services.storage_admin.migrate_store": ("nope://elsewhere",),
    "core.services.storage_admin.sweep_orphans": (60, True),
    "core.services.pacs_nodes.list_nodes": (),
    "core.services.pacs_nodes.save_node": ("Matrix PACS", "dimse"),
    "core.services.pacs_nodes.delete_node": (999_999,),
    "core.services.pacs_nodes.test_node": (999_999,),
    "core.services.pacs.find_studies": (999_999,),
    "core.services.pacs.find_series": (999_999, "1.2.3"),
    "core.services.pacs.pull_series": (999_999, "1.2.3", ["1.2.3.4"]),
    "core.services.pacs.get_pull": (999_999,),
    "core.services.pacs.push_images": (999_999, [999_999]),
    "core.services.models.model_card": (999_999,),
    "core.services.twofactor.status": (),
    "core.services.twofactor.begin_enrolment": (),
    "core.services.twofactor.confirm_enrolment": ("000000",),
    "core.services.twofactor.new_recovery_codes": ("000000",),
    "core.services.twofactor.disable": ("x", "000000"),
    "core.services.twofactor.reset": (999_999,),
    "core.services.twofactor.set_required_roles": (["admin", "doctor"],),
    "core.services.protect.protected_file": (999_999,),
    "core.services.protect.sealed_regions": (999_999,),
    "core.jobs.enqueue_protect": ([999_999],),
    "core.jobs.get_job": (999_999,),
    "core.jobs.list_jobs": (),
    "core.jobs.enqueue_analyze": ([999_999],),
    "core.services.models.list_models": (),
    "core.services.system.system_status": (),
    "core.services.explain.analyze": (999_999,),
    "core.services.explain.explain": (999_999,),
    "core.services.explain.review_queue": (),
    "core.services.explain.review": (999_999, "approved"),
    "core.services.explain.results": (),
    "core.services.explain.export": (),
    "core.services.explain.set_thresholds": (0.9, 0.7, 0.4, 0.5),
    "core.services.explain.classifier_tasks": (),
    "core.services.explain.segment": (999_999,),
    "core.services.annotate.save": (999_999, []),
    "core.services.annotate.get": (999_999,),
    "core.services.annotate.review": (999_999, True),
    "core.services.annotate.next_image": (),
    "core.services.annotate.prelabel": (999_999,),
    "core.services.datasets.assign_splits": (),
    "core.services.datasets.class_counts": (),
    "core.services.datasets.export_labels": ("csv",),
    "core.services.datasets.deploy": (999_999,),
    "core.services.restore.export_share": (999_999, "msx25519-public:" + "A" * 43 + "="),
    "core.services.patients.list_images": (),
    "core.services.keys.key_status": (),
    "core.services.keys.rotate_master_key": (),
    "core.services.projects.create_project": ("Matrix project", "classification", ["a", "b"]),
    "core.services.projects.list_projects": (),
    "core.services.projects.list_projects_for_training": (),
    "core.services.projects.add_images": (999_999, [999_999]),
    "core.services.projects.import_dataset": (999_999, "d.zip", b"PK"),
    "core.services.training.start_training": (999_999,),
    "core.services.training.start_evaluation": (999_999, 999_999),
    "core.services.training.cancel_job": (999_999,),
    "core.services.training.get_training_job": (999_999,),
    "core.services.training.list_training_jobs": (),
    "core.services.training.evaluation_history": ("classifier-cxr",),
}


def test_every_service_is_in_the_matrix():
    assert set(SERVICE_REGISTRY) == set(EXPECTED), (
        "a service was added or removed: extend EXPECTED and ARGS")
    assert set(ARGS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_service_matrix(rt, make_user, name):
    fn, _perm = SERVICE_REGISTRY[name]
    for role in ROLES:
        actor = make_user(role)
        if role in EXPECTED[name]:
            try:
                fn(actor, *ARGS[name])
            except AccessDenied as exc:  # pragma: no cover - a failure path
                pytest.fail(f"{name} refused {role}: {exc}")
            except MedShieldError:
                pass  # allowed, then refused for another reason (e.g. no such id)
        else:
            with pytest.raises(AccessDenied):
                fn(actor, *ARGS[name])


def test_denial_is_audited_and_has_no_effect(rt, make_user):
    from core.services import audit_log, ingest, users
    from sqlmodel import select, func
    from core.db.models import Image, User

    tech = make_user("technician")
    doctor = make_user("doctor")
    with pytest.raises(AccessDenied):
        users.create_user(tech, "sneaky", "Sneaky", "admin", "long-enough-1")
    with pytest.raises(AccessDenied):
        ingest.ingest_files(doctor, [("a.png", png_bytes())])
    with rt.session() as s:
        assert s.exec(select(User).where(User.username == "sneaky")).first() is None
        assert s.exec(select(func.count()).select_from(Image)).one() == 0
    from tests.conftest import admin_actor

    denials = audit_log.search_events(admin_actor(rt), outcome="denied")
    assert {d.username for d in denials} >= {tech.username, doctor.username}


def test_disabled_user_is_refused_at_once(rt, make_user):
    from core.services import patients, users
    from tests.conftest import admin_actor

    doc = make_user("doctor")
    patients.search_patients(doc)
    users.set_active(admin_actor(rt), doc.user_id, False)
    with pytest.raises(AccessDenied, match="disabled"):
        patients.search_patients(doc)


def test_forged_actor_role_is_ignored(rt, make_user):
    """The role is read from the database, not from the Actor the page hands over."""
    from core.services import users

    tech = make_user("technician")
    forged = Actor(tech.user_id, tech.username, "admin")
    with pytest.raises(AccessDenied):
        users.list_users(forged)
    with pytest.raises(AccessDenied):
        users.list_users("admin")  # not an Actor at all
