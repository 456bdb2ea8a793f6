"""The queue tasks that train and evaluate (core.services.training enqueues them): claim the job, build
the model (MONAI classifier or segmenter, or the YOLO detector), report epochs, register the version
last, in one transaction after the file; evaluate a version on a project's test split."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from sqlmodel import select

from core import audit
from core.db.models import ModelVersion, Project, utcnow
from core.errors import IntegrityError, MedShieldError, NotFound, ValidationError
from core.runtime import get_runtime

from core.services.training_data import Example, _decoded, _locked_job, _task_type, _tensors, _yolo_dir, project_examples


# ---------------------------------------------------------------- the queue tasks

def _claim(job_id: int) -> dict | None:
    """queued -> running, once (a duplicate delivery finds it running and returns None)."""
    rt = get_runtime()
    with rt.session() as s:
        job = _locked_job(rt, s, job_id)
        if job is None or job.status != "queued":
            return None
        job.status, job.started_at = "running", utcnow()
        job.result = {**(job.result or {}), "heartbeat": time.time()}
        s.add(job)
        return dict(job.params)


class _Progress:
    """Writes epoch rows and a heartbeat to the job; answers whether a cancel was asked."""

    def __init__(self, job_id: int, epochs: int):
        self.job_id, self.epochs, self._last = job_id, max(1, epochs), 0.0
        self._cancel = False
        self.cancelled = False  # set by the detector's callbacks when they stopped the trainer

    def epoch(self, row: dict) -> None:
        rt = get_runtime()
        with rt.session() as s:
            job = _locked_job(rt, s, self.job_id)
            res = dict(job.result or {})
            res["history"] = list(res.get("history", [])) + [row]
            res["heartbeat"] = time.time()
            job.result = res
            job.progress = min(0.99, row["epoch"] / self.epochs)
            job.message = f"epoch {row['epoch']}/{self.epochs}: loss {row['train_loss']:.4f}, validation {row['val_score']}"
            self._cancel = job.status == "cancelling"
            s.add(job)

    def should_stop(self) -> bool:
        now = time.time()
        if now - self._last >= 1.0:
            self._last = now
            rt = get_runtime()
            with rt.session() as s:
                job = _locked_job(rt, s, self.job_id)
                self._cancel = job is None or job.status == "cancelling"
                if job is not None:
                    job.result = {**(job.result or {}), "heartbeat": now}
                    s.add(job)
        return self._cancel


def _finish(job_id: int, status: str, message: str, **result) -> None:
    rt = get_runtime()
    with rt.session() as s:
        job = _locked_job(rt, s, job_id)
        job.status, job.finished_at, job.message = status, utcnow(), message[:2000]
        if status == "finished":
            job.progress = 1.0
        job.result = {**(job.result or {}), **result}
        s.add(job)


def _deployed_for(model_task: str) -> ModelVersion | None:
    with get_runtime().session() as s:
        mv = s.exec(select(ModelVersion).where(ModelVersion.task == model_task, ModelVersion.deployed == True)).first()  # noqa: E712
        if mv is not None:
            s.expunge(mv)
        return mv


def _abs(path: str, sha256: str | None = None) -> str:
    """A local file holding a model version's weights (fetched from the blob store by checksum when this
    machine lacks it: see core.services.models.local_weights)."""
    from core.services.models import local_weights

    return local_weights(path, sha256)


def run_training(job_id: int) -> None:
    """The queue task. Any failure leaves the job failed and registers nothing."""
    params = _claim(job_id)
    if params is None:
        return
    try:
        _train(job_id, params)
    except MedShieldError as exc:
        _finish(job_id, "failed", str(exc))
    except Exception as exc:  # a bug or a broken file must not leave the job 'running'
        _finish(job_id, "failed", f"{type(exc).__name__}: {str(exc)[:300]}")


def _train(job_id: int, params: dict) -> None:
    from core.ml import finetune

    p, examples = project_examples(params["project_id"])
    train = [e for e in examples if e.split == "train"]
    val = [e for e in examples if e.split == "val"] or train
    progress = _Progress(job_id, params["epochs"])
    base = _deployed_for(p.model_task) if params.get("fine_tune") else None
    rt = get_runtime()
    out_dir = rt.settings.data_dir / "models"
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        if p.task_type == "detection":
            weights, metrics, hyper = _train_detector(job_id, p, train, val, params, base, progress, out_dir)
        else:
            weights, metrics, hyper = _train_monai(job_id, p, train, val, params, base, progress, out_dir)
    except finetune.Cancelled:
        _finish(job_id, "cancelled", "cancelled while training; no version registered")
        return
    test = [e for e in examples if e.split == "test"]
    from core.hashing import file_sha256

    sha = file_sha256(weights)
    # the weights go to the blob store first (every worker and app replica can fetch them by checksum),
    # then the version row is committed
    stored, _ = rt.store.put(Path(weights).read_bytes())
    if stored != sha:
        raise IntegrityError("The trained weights changed while they were being stored.")
    with rt.session() as s:
        n = len(s.exec(select(ModelVersion).where(ModelVersion.task == p.model_task)).all())
        mv = ModelVersion(task=p.model_task, name=f"{hyper['arch']}-{p.name}"[:64], version=f"v{n + 1}-job{job_id}",
                          path=str(weights), sha256=sha, deployed=False, created_by=params["actor"][0],
                          metrics={"validation": metrics, "evaluations": []},
                          params={**hyper, "source": "training job", "job_id": job_id, "project_id": p.id,
                                  "fine_tuned_from": (f"{base.name} {base.version} (#{base.id})" if base else None),
                                  "training_data": [[e.image_id, e.sha256] for e in train],
                                  "validation_data": [[e.image_id, e.sha256] for e in val],
                                  "minutes": round((time.time() - started) / 60, 2)})
        s.add(mv)
        s.flush()
        version_id = mv.id
    audit.record(rt.engine, params["actor"][1], params["actor"][2], "model.register", "success", object_type="model",
                 object_id=version_id, detail=f"task={p.model_task} job={job_id} sha256={sha[:12]}")
    result_metrics = dict(metrics)
    if test:
        try:
            ev = _evaluate(version_id, p.id)
            result_metrics["test"] = ev["metrics"]
        except MedShieldError as exc:
            result_metrics["test_error"] = str(exc)
    _finish(job_id, "finished", f"version #{version_id} registered ({len(train)} training images)",
            version_id=version_id, metrics=result_metrics)


def _train_monai(job_id, p: Project, train, val, params, base, progress, out_dir: Path):
    import torch

    from core.ml import classifier, finetune, segmenter
    from core.ml.evaluation import multiclass_metrics, segmentation_metrics

    dev = classifier.device()
    seed = int(params.get("seed", 0))
    torch.manual_seed(seed)
    classes = tuple(p.classes or ())
    if p.task_type == "classification":
        arch = params.get("arch") or "resnet18"
        size = params.get("size") or 128
        model = classifier.build(arch, num_classes=len(classes), dropout=0.2)
        if base is not None:
            bmodel, bclasses, bsize, barch = classifier.load(_abs(base.path, base.sha256), base.sha256)
            if tuple(bclasses) == classes and barch == arch:
                model.load_state_dict(bmodel.state_dict())
                size = params.get("size") or bsize
            else:
                base = None  # classes or architecture differ: from scratch
        model = model.to(dev)
        xtr, ytr = _tensors(p, train, size)
        xva, yva = _tensors(p, val, size)
        loss_fn = torch.nn.CrossEntropyLoss(weight=finetune.class_weights(ytr.numpy(), len(classes), dev))
        positive = classes[-1] if len(classes) == 2 else classes[0]

        def validate(m) -> float:
            r = multiclass_metrics(yva.numpy(), finetune.predict_probs(m, xva), classes, positive)
            return r["auc"] if np.isfinite(r["auc"]) else r["acc_all_classes"]

        aug = finetune.classifier_augment(seed)
    else:
        arch = params.get("arch") if params.get("arch") in segmenter.VARIANTS else "residual-unet"
        size = params.get("size") or 128
        channels = (16, 32, 64, 128, 256)
        model = segmenter.build(arch, channels)
        if base is not None:
            bmodel, bsize, bvariant = segmenter.load(_abs(base.path, base.sha256), base.sha256)
            if bvariant == arch:
                model.load_state_dict(bmodel.state_dict())
                size = params.get("size") or bsize
            else:
                base = None
        model = model.to(dev)
        xtr, ytr = _tensors(p, train, size)
        xva, yva = _tensors(p, val, size)
        from monai.losses import DiceCELoss

        loss_fn = DiceCELoss(sigmoid=True)

        def validate(m) -> float:
            return segmentation_metrics(finetune.predict_masks(m, xva), yva)["dice"]

        aug = finetune.segmenter_augment(seed)
    lr = params.get("lr") or (3e-4 if base is not None else 1e-3)
    fitted = finetune.fit(model, xtr, ytr, loss_fn, validate, epochs=params["epochs"], lr=lr,
                          batch=params.get("batch", 16), augment=aug, seed=seed, on_epoch=progress.epoch,
                          should_stop=progress.should_stop)
    model.load_state_dict(fitted.best_state)
    path = out_dir / f"{p.model_task}-job{job_id}.pt"
    ckpt = {"size": size, "state_dict": classifier.compact_state_dict(model)}
    if p.task_type == "classification":
        ckpt.update({"arch": arch, "classes": classes, "positive": positive})
    else:
        ckpt.update({"variant": arch, "channels": (16, 32, 64, 128, 256), "classes": classes})
    torch.save(ckpt, path)
    hyper = {"arch": arch, "size": size, "epochs": params["epochs"], "epochs_run": len(fitted.history), "lr": lr,
             "batch": params.get("batch", 16), "seed": seed, "fine_tune": base is not None, "history": fitted.history}
    return path, {"best_val_score": fitted.best_score, "val_images": len(val), "train_images": len(train)}, hyper


def _train_detector(job_id, p: Project, train, val, params, base, progress, out_dir: Path):
    from core.ml import finetune, yolo_env
    from core.ml.detector import device as yolo_device

    rt = get_runtime()
    work = rt.settings.data_dir / "jobs" / f"train-{job_id}"
    shutil.rmtree(work, ignore_errors=True)
    data_yaml = _yolo_dir(work / "ds", p, {"train": train, "val": val})
    YOLO = yolo_env.import_yolo()
    imgsz = int(params.get("size") or 416)
    if base is not None and len(base.params.get("classes", [])) in (0, len(p.classes or [])):
        model = YOLO(_abs(base.path, base.sha256))
    else:
        model, base = YOLO("yolov8n.yaml"), None

    seen: set[int] = set()

    def on_epoch_end(trainer) -> None:
        ep = min(int(trainer.epoch) + 1, int(params["epochs"]))
        if ep in seen:  # the final validation reports the last epoch again
            return
        seen.add(ep)
        tl = getattr(trainer, "tloss", None)
        if isinstance(tl, dict):
            loss = sum(float(v) for v in tl.values())
        else:
            loss = float(tl.sum()) if tl is not None else float("nan")
        fit = trainer.metrics.get("metrics/mAP50(B)") if isinstance(getattr(trainer, "metrics", None), dict) else None
        progress.epoch({"epoch": ep, "epochs": params["epochs"], "train_loss": round(loss, 5),
                        "val_score": None if fit is None else round(float(fit), 5), "minutes": 0})
        if progress.should_stop():
            trainer.stop = True
            progress.cancelled = True

    def on_batch_end(trainer) -> None:
        if progress.should_stop():
            trainer.stop = True
            progress.cancelled = True

    model.add_callback("on_fit_epoch_end", on_epoch_end)
    model.add_callback("on_train_batch_end", on_batch_end)
    dev = "0" if yolo_device().startswith("cuda") else "cpu"
    # fine-tuning keeps the starting weights (pretrained=True takes them from the loaded model)
    # and skips the bias warm-up, whose high learning rate would wreck them
    model.train(data=str(data_yaml), imgsz=imgsz, epochs=params["epochs"], batch=params.get("batch", 16), device=dev,
                workers=0, pretrained=base is not None, plots=False, amp=dev != "cpu", project=str(work / "runs"),
                name="train", exist_ok=True, seed=int(params.get("seed", 0)), verbose=False, val=True,
                warmup_epochs=0 if base is not None else 3, lr0=params.get("lr") or (0.002 if base is not None else 0.01),
                fliplr=0.0, mosaic=1.0 if len(train) >= 8 else 0.0)
    if progress.cancelled:
        shutil.rmtree(work, ignore_errors=True)
        raise finetune.Cancelled("Training was cancelled.")
    best = work / "runs" / "train" / "weights" / "best.pt"
    if not best.exists():
        best = work / "runs" / "train" / "weights" / "last.pt"
    path = out_dir / f"{p.model_task}-job{job_id}.pt"
    shutil.copyfile(best, path)
    shutil.rmtree(work, ignore_errors=True)
    hyper = {"arch": "yolov8n", "size": imgsz, "epochs": params["epochs"], "lr": params.get("lr"), "classes": list(p.classes or []),
             "batch": params.get("batch", 16), "fine_tune": base is not None}
    return path, {"train_images": len(train), "val_images": len(val)}, hyper


def run_evaluation(job_id: int) -> None:
    params = _claim(job_id)
    if params is None:
        return
    try:
        ev = _evaluate(params["version_id"], params["project_id"])
    except MedShieldError as exc:
        _finish(job_id, "failed", str(exc))
    except Exception as exc:
        _finish(job_id, "failed", f"{type(exc).__name__}: {str(exc)[:300]}")
    else:
        _finish(job_id, "finished", f"evaluated on {ev['metrics'].get('n', 0)} test image(s)", metrics=ev["metrics"],
                version_id=params["version_id"])


def _evaluate(version_id: int, project_id: int) -> dict:
    """Evaluate a version on the project's test split and store the result with the version."""
    from core.ml import classifier, finetune, segmenter
    from core.ml.evaluation import multiclass_metrics, segmentation_metrics

    rt = get_runtime()
    with rt.session() as s:
        mv = s.get(ModelVersion, version_id)
        if mv is None:
            raise NotFound(f"No model version {version_id}.")
        s.expunge(mv)
    p, examples = project_examples(project_id)
    if _task_type(mv.task) != p.task_type:
        raise ValidationError(f"{mv.name} {mv.version} is a {_task_type(mv.task)} model; project {p.name!r} is {p.task_type}.")
    test = [e for e in examples if e.split == "test"]
    if not test:
        raise ValidationError(f"Project {p.name!r} has no approved images in its test split.")
    if p.task_type == "classification":
        model, classes, size, _ = classifier.load(_abs(mv.path, mv.sha256), mv.sha256)
        if set(p.classes or []) - set(classes):
            raise ValidationError("The model's classes do not cover the project's classes.")
        x, _ = _tensors(p, test, size)
        y = np.array([list(classes).index(e.label) for e in test])
        positive = classes[-1] if len(classes) == 2 else classes[0]
        m = multiclass_metrics(y, finetune.predict_probs(model, x), tuple(classes), positive)
        m.pop("roc", None)
    elif p.task_type == "segmentation":
        model, size, _ = segmenter.load(_abs(mv.path, mv.sha256), mv.sha256)
        x, y = _tensors(p, test, size)
        m = segmentation_metrics(finetune.predict_masks(model, x), y)
    else:
        m = _evaluate_detector(mv, p, test)
    m = {k: v for k, v in m.items() if k != "roc"}
    entry = {"project_id": p.id, "project": p.name, "at": utcnow().isoformat(), "metrics": m}
    with rt.session() as s:
        row = s.get(ModelVersion, version_id)
        metrics = dict(row.metrics or {})
        metrics["evaluations"] = list(metrics.get("evaluations", [])) + [entry]
        row.metrics = metrics
        s.add(row)
    audit.record(rt.engine, "system", "system", "model.evaluate", "success", object_type="model", object_id=version_id,
                 detail=f"project={p.id} n={len(test)}")
    return entry


def _evaluate_detector(mv: ModelVersion, p: Project, test: list[Example]) -> dict:
    """Box precision and recall at IoU 0.5, and mAP50 from ultralytics' own validator."""
    from core.imaging.display import to_display_uint8
    from core.ml import detector

    model = detector.load(_abs(mv.path, mv.sha256), mv.sha256)
    tp = fp = fn = 0
    for ex in test:
        d = _decoded(ex.image_id)
        view = to_display_uint8(d.pixels, photometric=d.photometric, frames=d.frames)
        dets = detector.detect(view, model=model, verifier=None)  # the version alone, not the verifier
        truth = [tuple(sh["box"]) if sh["kind"] == "rect" else
                 (min(q[0] for q in sh["points"]), min(q[1] for q in sh["points"]),
                  max(q[0] for q in sh["points"]), max(q[1] for q in sh["points"])) for sh in ex.shapes]
        used = set()
        for det in dets:
            b = (det.box.x0, det.box.y0, det.box.x1, det.box.y1)
            best, k = 0.0, None
            for i, t in enumerate(truth):
                if i in used:
                    continue
                v = _iou(b, t)
                if v > best:
                    best, k = v, i
            if k is not None and best >= 0.5:
                tp += 1
                used.add(k)
            else:
                fp += 1
        fn += len(truth) - len(used)
    return {"n": len(test), "precision": tp / max(1, tp + fp), "recall": tp / max(1, tp + fn), "tp": tp, "fp": fp, "fn": fn}


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
