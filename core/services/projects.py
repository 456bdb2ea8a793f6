"""Labelling projects: a task type (classification, detection, segmentation), a class list and
the model task its versions serve; dataset import into a project (class folders or labels.csv,
YOLO boxes/polygons, COCO), with every label file checked before anything is stored."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import select

from core import audit
from core.db.models import Annotation, Image, Project
from core.errors import Conflict, InvalidImage, NotFound, ValidationError
from core.imaging.archive import read_archive_with_sidecars
from core.imaging.labelfiles import parse_label_files, to_pixels
from core.imaging.sniff import sniff_format
from core.runtime import get_runtime
from core.security import Actor, Permission, service
from core.timeutil import as_utc

TASK_TYPES = ("classification", "detection", "segmentation")
DEFAULT_MODEL_TASK = {"classification": "classifier", "detection": "detector", "segmentation": "segmenter"}


@dataclass(frozen=True)
class ProjectInfo:
    id: int
    name: str
    task_type: str
    classes: tuple[str, ...]
    model_task: str
    description: str
    images: int
    labelled: int
    created_at: datetime


@dataclass
class ImportReport:
    project_id: int
    accepted: int
    duplicates: int
    rejected: int
    shapes: int
    label_format: str
    results: list  # ingest FileResult rows


def _info(s, p: Project) -> ProjectInfo:
    imgs = s.exec(select(Image).where(Image.project_id == p.id)).all()
    return ProjectInfo(p.id, p.name, p.task_type, tuple(p.classes or ()), p.model_task, p.description,  # type: ignore[arg-type]
                       len(imgs), sum(1 for i in imgs if i.label), as_utc(p.created_at))  # type: ignore[arg-type]


def _load(s, project_id: int) -> Project:
    p = s.get(Project, project_id)
    if p is None:
        raise NotFound(f"No project with id {project_id}.")
    return p


@service(Permission.ANNOTATE)
def create_project(actor: Actor, name: str, task_type: str, classes: list[str], model_task: str | None = None,
                   description: str = "") -> ProjectInfo:
    name = (name or "").strip()
    if not re.fullmatch(r"[\w .\-]{2,64}", name):
        raise ValidationError("A project name is 2-64 letters, digits, spaces, dots, dashes or underscores.")
    if task_type not in TASK_TYPES:
        raise ValidationError(f"The task type is one of {', '.join(TASK_TYPES)}.")
    clean = []
    for c in classes:
        c = str(c).strip()[:64]
        if c and c not in clean:
            clean.append(c)
    if task_type == "classification" and len(clean) < 2:
        raise ValidationError("A classification project needs at least two classes.")
    if not clean:
        raise ValidationError("Give at least one class.")
    model_task = (model_task or "").strip() or f"{DEFAULT_MODEL_TASK[task_type]}-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}"
    if not re.fullmatch(r"[a-z0-9][a-z0-9\-]{1,31}", model_task) or not model_task.startswith(DEFAULT_MODEL_TASK[task_type]):
        raise ValidationError(f"The model task must start with {DEFAULT_MODEL_TASK[task_type]!r} "
                              "(lower-case letters, digits and dashes, at most 32).")
    rt = get_runtime()
    with rt.session() as s:
        if s.exec(select(Project).where(Project.name == name)).first():
            raise Conflict(f"A project named {name!r} exists already.")
        p = Project(name=name, task_type=task_type, classes=clean, model_task=model_task,
                    description=(description or "")[:2000], created_by=actor.user_id)
        s.add(p)
        s.flush()
        info = _info(s, p)
    audit.record(rt.engine, actor.username, actor.role, "project.create", "success", object_type="project",
                 object_id=info.id, detail=f"task={task_type} classes={len(clean)}")
    return info


@service(Permission.ANNOTATE)
def list_projects(actor: Actor) -> list[ProjectInfo]:
    with get_runtime().session() as s:
        return [_info(s, p) for p in s.exec(select(Project).order_by(Project.id)).all()]


@service(Permission.MODEL_TRAIN)
def list_projects_for_training(actor: Actor) -> list[ProjectInfo]:
    """The same list for doctors and admins on the Models page (no pixels)."""
    return list_projects.__wrapped__(actor)  # type: ignore[attr-defined]


@service(Permission.ANNOTATE)
def add_images(actor: Actor, project_id: int, image_ids: list[int]) -> ProjectInfo:
    rt = get_runtime()
    with rt.session() as s:
        p = _load(s, project_id)
        imgs = s.exec(select(Image).where(Image.id.in_(list(image_ids)))).all()  # type: ignore[union-attr]
        if len(imgs) != len(set(image_ids)):
            raise NotFound("Some of those images do not exist.")
        for i in imgs:
            i.project_id = p.id
            s.add(i)
        s.flush()
        info = _info(s, p)
    audit.record(rt.engine, actor.username, actor.role, "project.add_images", "success", object_type="project",
                 object_id=project_id, detail=f"images={len(imgs)}")
    return info


@service(Permission.IMAGE_UPLOAD)
def import_dataset(actor: Actor, project_id: int, name: str, data: bytes, modality: str | None = None) -> ImportReport:
    """A zip of images with labels (class folders, labels.csv, YOLO, COCO) into a project. The
    archive and every label file are checked first; a refusal stores nothing."""
    from core.services.ingest import ingest_files

    rt = get_runtime()
    with rt.session() as s:
        p = _load(s, project_id)
        task_type, classes = p.task_type, list(p.classes or [])
    if not isinstance(data, (bytes, bytearray)) or sniff_format(bytes(data[:264])) != "zip":
        raise InvalidImage("A dataset import is a zip archive.")
    members, sidecars = read_archive_with_sidecars(bytes(data), rt.settings.limits)
    parsed = parse_label_files([m.path for m in members], sidecars)
    if task_type == "classification":
        unknown = sorted({m.label for m in members if m.label and m.label not in classes})
        if unknown:
            raise ValidationError(f"Labels not in the project's classes: {', '.join(unknown[:5])}.")
    elif parsed.shapes:
        unknown = sorted({sh["label"] for v in parsed.shapes.values() for sh in v if sh["label"] not in classes})
        if unknown:
            raise ValidationError(f"Label-file classes not in the project's classes: {', '.join(unknown[:5])}.")
    # image sizes are checked against the label files before anything is stored
    from core.imaging.decode import decode_image

    pixel_shapes: dict[str, list[dict]] = {}
    for m in members:
        if m.path in parsed.shapes:
            img = decode_image(m.data, rt.settings.limits)
            pixel_shapes[m.path] = to_pixels(parsed.shapes[m.path], img.rows, img.cols, parsed.normalised,
                                             posixpath.basename(m.path)[:60])
    report = ingest_files.__wrapped__(actor, [(name, bytes(data))], modality=modality)  # type: ignore[attr-defined]
    prefix = f"{str(name or 'upload')[:200]}/"
    n_shapes = 0
    with rt.session() as s:
        for r in report.results:
            if r.image_id is None:
                continue
            img = s.get(Image, r.image_id)
            img.project_id = project_id
            path = r.name[len(prefix):] if r.name.startswith(prefix) else r.name
            if task_type != "classification":
                img.label = None  # folder names of a box dataset are not classes
                shapes = pixel_shapes.get(path, [])
                if shapes and not s.exec(select(Annotation).where(Annotation.image_id == img.id)).first():
                    for sh in shapes:
                        s.add(Annotation(image_id=img.id, author_id=actor.user_id, kind=sh["kind"], label=sh["label"],
                                         geometry={k: v for k, v in sh.items() if k not in ("kind", "label")},
                                         status="approved"))
                    s.add(Annotation(image_id=img.id, author_id=actor.user_id, kind="label", label="",
                                     geometry={"use_for_training": True, "comment": "imported"}, status="approved"))
                    n_shapes += len(shapes)
            s.add(img)
    audit.record(rt.engine, actor.username, actor.role, "project.import", "success", object_type="project",
                 object_id=project_id, detail=f"accepted={report.accepted} shapes={n_shapes} format={parsed.format or 'folders'}")
    return ImportReport(project_id, report.accepted, report.duplicates, report.rejected, n_shapes,
                        parsed.format or ("folders" if any(m.label for m in members) else ""), report.results)
