"""Roles, permissions and the `service` decorator that enforces them in core.

Every service function takes the acting user (an `Actor`) as its first argument and is wrapped by
`@service(Permission.X)`. The wrapper re-reads the user from the database (a disabled user or a
changed role takes effect at once), refuses with `AccessDenied` and writes a `denied` audit event
when the role lacks the permission. Pages only hide what a role cannot use; this is the law.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from enum import Enum
from typing import Callable, TypeVar

from core import audit
from core.db.models import Setting, User
from core.errors import AccessDenied
from core.runtime import get_runtime


class Role(str, Enum):
    TECHNICIAN = "technician"
    DOCTOR = "doctor"
    ADMIN = "admin"


ROLES = tuple(r.value for r in Role)


class Permission(str, Enum):
    IMAGE_UPLOAD = "image.upload"
    IMAGE_VIEW = "image.view"  # protected pixels and thumbnails
    PATIENT_READ = "patient.read"
    PATIENT_WRITE = "patient.write"
    USER_MANAGE = "user.manage"
    AUDIT_READ = "audit.read"
    ACCOUNT_SELF = "account.self"  # change one's own password, see one's own history
    IMAGE_PROTECT = "image.protect"  # review regions, seal them, de-identify
    IMAGE_RESTORE = "image.restore"  # decrypt regions, see and download originals
    KEY_MANAGE = "key.manage"  # master-key rotation
    METRICS_READ = "metrics.read"  # aggregate protection/processing figures, no pixels
    SYSTEM_READ = "system.read"  # health, queue, jobs, models, storage (no patient data)
    AI_EXPLAIN = "ai.explain"  # run the clinical models, see heatmaps
    AI_REVIEW = "ai.review"  # approve, reject or correct AI results
    SETTINGS_MANAGE = "settings.manage"  # thresholds and policies
    ANNOTATE = "annotate"  # draw shapes and labels
    ANNOTATION_REVIEW = "annotation.review"  # approve or reject annotations
    MODEL_DEPLOY = "model.deploy"  # choose the version inference uses
    MODEL_TRAIN = "model.train"  # start, watch and cancel training and evaluation jobs
    JOB_MANAGE = "job.manage"  # see every job of the queue, cancel and retry any of them
    PACS_MANAGE = "pacs.manage"  # add, change, test and remove PACS nodes
    PACS_USE = "pacs.use"  # see the configured PACS nodes (names and addresses, never credentials)
    PACS_QUERY = "pacs.query"  # search a PACS and pull series in (with image.upload)
    PACS_PUSH = "pacs.push"  # send protected, de-identified images to a PACS


ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    Role.TECHNICIAN.value: frozenset({
        Permission.IMAGE_UPLOAD, Permission.IMAGE_VIEW, Permission.PATIENT_READ,
        Permission.PATIENT_WRITE, Permission.ACCOUNT_SELF, Permission.IMAGE_PROTECT, Permission.ANNOTATE,
        Permission.PACS_USE, Permission.PACS_QUERY, Permission.PACS_PUSH,
    }),
    Role.DOCTOR.value: frozenset({
        Permission.IMAGE_VIEW, Permission.PATIENT_READ, Permission.PATIENT_WRITE,
        Permission.ACCOUNT_SELF, Permission.IMAGE_RESTORE, Permission.METRICS_READ,
        Permission.AI_EXPLAIN, Permission.AI_REVIEW, Permission.ANNOTATE, Permission.ANNOTATION_REVIEW,
        Permission.MODEL_DEPLOY, Permission.MODEL_TRAIN, Permission.PACS_USE, Permission.PACS_PUSH,
    }),
    # Admins run the system; they never read patient images without a clinical role.
    Role.ADMIN.value: frozenset({
        Permission.USER_MANAGE, Permission.AUDIT_READ, Permission.ACCOUNT_SELF, Permission.KEY_MANAGE,
        Permission.METRICS_READ, Permission.SYSTEM_READ, Permission.SETTINGS_MANAGE, Permission.MODEL_DEPLOY,
        Permission.MODEL_TRAIN, Permission.JOB_MANAGE, Permission.PACS_MANAGE, Permission.PACS_USE,
    }),
}


def has_permission(role: str, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS.get(role, frozenset())


@dataclass(frozen=True)
class Actor:
    """The acting user, as the page or CLI knows it. The role is re-checked in the database."""

    user_id: int
    username: str
    role: str


TWO_FACTOR_SETTING = "two_factor"
TWO_FACTOR_DEFAULT = ("admin", "doctor")


def two_factor_roles(session=None) -> tuple[str, ...]:
    """Roles that must sign in with a second factor: the admin's setting, else MEDSHIELD_2FA_ROLES
    (comma-separated; empty for none), else admin and doctor. `session`: an open one to read it in."""
    if session is not None:
        row = session.get(Setting, TWO_FACTOR_SETTING)
    else:
        with get_runtime().session() as s:
            row = s.get(Setting, TWO_FACTOR_SETTING)
    if row is not None and isinstance(row.value, dict) and isinstance(row.value.get("required_roles"), list):
        return tuple(r for r in row.value["required_roles"] if r in ROLES)
    env = os.environ.get("MEDSHIELD_2FA_ROLES")
    if env is not None:
        return tuple(r.strip() for r in env.split(",") if r.strip() in ROLES)
    return TWO_FACTOR_DEFAULT


def current_actor_state(actor: Actor) -> tuple[str | None, bool]:
    """(the user's role now, whether they must set up a second factor first); role None when the
    account is disabled or gone. Read from the database on every call: a change takes effect at once."""
    with get_runtime().session() as s:
        user = s.get(User, actor.user_id)
        if user is None or not user.is_active or user.username != actor.username:
            return None, False
        return user.role, not user.totp_enabled and user.role in two_factor_roles(s)


F = TypeVar("F", bound=Callable)

# name -> (function, permission); the permission-matrix test enumerates this registry.
SERVICE_REGISTRY: dict[str, tuple[Callable, Permission]] = {}


def service(permission: Permission) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(actor: Actor, *args, **kwargs):
            if not isinstance(actor, Actor):
                raise AccessDenied("No acting user was given: log in first.")
            role, must_enrol = current_actor_state(actor)
            if must_enrol and permission is not Permission.ACCOUNT_SELF:
                audit.record(get_runtime().engine, actor.username, role or actor.role, f"deny:{fn.__name__}",
                             "denied", detail="second factor not set up")
                raise AccessDenied("Your role signs in with a second factor: set up two-factor sign-in on "
                                   "My account first.")
            if role is None or not has_permission(role, permission):
                audit.record(
                    get_runtime().engine, actor.username, role or actor.role, f"deny:{fn.__name__}",
                    "denied", detail=f"missing permission {permission.value}",
                )
                if role is None:
                    raise AccessDenied("Your account is disabled or no longer exists.")
                raise AccessDenied(
                    f"Your role ({role}) does not allow this action ({permission.value})."
                )
            return fn(actor, *args, **kwargs)

        wrapper.permission = permission  # type: ignore[attr-defined]
        SERVICE_REGISTRY[f"{fn.__module__}.{fn.__name__}"] = (wrapper, permission)
        return wrapper  # type: ignore[return-value]

    return decorate
