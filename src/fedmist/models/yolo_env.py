"""Make ``ultralytics`` work offline before it is imported (DESIGN section 8: no downloads, ever).

Why a function and not import-time code: it sets process environment (``YOLO_OFFLINE``, ``YOLO_CONFIG_DIR``)
that ultralytics reads when it is first imported, so the worker/CLI calls it right before that import and no
fedmist import has side effects. Its plotting and trainer code fetch an Arial font unless one sits in the
config folder; matplotlib's DejaVuSans is copied there under both names instead. Its settings get
``sync=False`` (no telemetry).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def config_dir() -> Path:
    """The fedmist-controlled ultralytics config folder (``FEDMIST_YOLO_CONFIG_DIR`` overrides it)."""
    override = os.environ.get("FEDMIST_YOLO_CONFIG_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fedmist" / "ultralytics"


def _install_fonts(folder: Path) -> None:
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in FONT_NAMES:
        target = folder / name
        if not target.exists():
            tmp = folder / f".{name}.tmp{os.getpid()}"
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)


def prepare_ultralytics():
    """Set up the offline environment, import ultralytics, turn sync off; return the ``ultralytics`` module.

    Raises RuntimeError with an install hint when ultralytics is missing (``pip install 'fedmist[yolo]'``).
    """
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    _install_fonts(folder)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(folder))
    os.environ.setdefault("YOLO_VERBOSE", "False")
    try:
        import ultralytics
        from ultralytics.utils import SETTINGS
    except ImportError as exc:
        raise RuntimeError(f"YOLO models need ultralytics: pip install 'fedmist[yolo]' ({exc})") from None
    if SETTINGS.get("sync", False):
        SETTINGS.update({"sync": False})
    return ultralytics
