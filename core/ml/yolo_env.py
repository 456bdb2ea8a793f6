"""Keep ultralytics fully offline. Call `configure()` before the first `import ultralytics`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from core.config import PROJECT_ROOT

_FONTS = [Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
          Path("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf")]


def configure(config_dir: Path | None = None) -> Path:
    cfg = Path(config_dir or os.environ.get("YOLO_CONFIG_DIR") or PROJECT_ROOT / "data" / "yolo-config")
    ul = cfg / "Ultralytics"
    ul.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    settings = ul / "settings.json"
    data = {}
    if settings.exists():
        try:
            data = json.loads(settings.read_text())
        except ValueError:
            data = {}
    data.update({"sync": False, "hub": False, "wandb": False, "mlflow": False, "comet": False,
                 "clearml": False, "dvc": False, "tensorboard": False, "raytune": False, "neptune": False})
    settings.write_text(json.dumps(data))
    font = next((f for f in _FONTS if f.exists()), None)
    if font is not None:  # check_font() would otherwise try to download Arial
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            if not (ul / name).exists():
                shutil.copyfile(font, ul / name)
    return cfg


def import_yolo(config_dir: Path | None = None):
    """`ultralytics.YOLO`, imported with PIL.Image.open put back afterwards: ultralytics patches it
    process-wide to try a HEIF plugin (and an install) on unreadable files, which would change how
    every hostile upload is refused."""
    configure(config_dir)
    from PIL import Image

    original = Image.open
    import torch
    from ultralytics import YOLO
    from ultralytics.utils import torch_utils

    Image.open = original
    # select_device() sets torch's thread count to ultralytics' NUM_THREADS, os.cpu_count() - 1, on every
    # CPU predict and train: one thread on a 2-core machine, for the whole process. Keep the process's own.
    torch_utils.NUM_THREADS = torch.get_num_threads()
    return YOLO
