"""Roles, permissions and the `service` decorator that enforces them in core.

Every service function takes the acting user (an `Actor`) as its first argument and is wrapped by
`@service(Permission.X)`. The wrapper re-reads the user from the database (a disabled user or a
changed role takes effect at once), refuses with `AccessDenied` and writes a `denied` audit event
when the role lacks the permission. Pages only hide what a role cannot use; this is the law.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import Enum
from typing import Callable, TypeVar

from core.errors import AccessDenied


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


ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    Role.TECHNICIAN.value: frozenset({
        Permission.IMAGE_UPLOAD, Permission.IMAGE_VIEW, Permission.PATIENT_READ,
        Permission.PATIENT_WRITE, Permission.ACCOUNT_SELF, Permission.IMAGE_PROTECT, Permission.ANNOTATE,
    }),
    Role.DOCTOR.value: frozenset({
        Permission.IMAGE_VIEW, Permission.PATIENT_READ, Permission.PATIENT_WRITE,
        Permission.ACCOUNT_SELF, Permission.IMAGE_RESTORE, Permission.METRICS_READ,
        Permission.AI_EXPLAIN, Permission.AI_REVIEW, Permission.ANNOTATE, Permission.ANNOTATION_REVIEW,
        Permission.MODEL_DEPLOY, Permission.MODEL_TRAIN,
    }),
    # Admins run the system; they never read patient images without a clinical role.
    Role.ADMIN.value: frozenset({
        Permission.USER_MANAGE, Permission.AUDIT_READ, Permission.ACCOUNT_SELF, Permission.KEY_MANAGE,
        Permission.METRICS_READ, Permission.SYSTEM_READ, Permission.SETTINGS_MANAGE, Permission.MODEL_DEPLOY,
        Permission.MODEL_TRAIN,
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


F = TypeVar("F", bound=Callable)

# name -> (function, permission); the permission-matrix test enumerates this registry.
SERVICE_REGISTRY: dict[str, tuple[Callable, Permission]] = {}


def service(permission: Permission) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(actor: Actor, *args, **kwargs):
            from core.services.context import current_actor_role  # avoid an import cycle

            if not isinstance(actor, Actor):
                raise AccessDenied("No acting user was given: log in first.")
            role = current_actor_role(actor)
            if role is None or not has_permission(role, permission):
                from core import audit
                from core.runtime import get_runtime

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
