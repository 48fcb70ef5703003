"""YOLO detectors through ultralytics: build, load pretrained weights safely, save for fedmist and ultralytics.

Pretrained weights come as an ultralytics checkpoint (a dict holding a pickled ``DetectionModel``) or as a
plain state dict (``.pth``). Neither is unpickled freely: ``torch.load(weights_only=True)`` runs with an
allowlist of the classes the checkpoint names (found with ``get_unsafe_globals_in_checkpoint``, which reads the
pickle's opcodes without executing it), and only when each is one of :data:`YOLOV5_CHECKPOINT_CLASSES` -- the
exact classes a YOLOv5 ``DetectionModel`` pickles -- or a plain data type. Why not every class under
``torch.`` and ``ultralytics.``: that is hundreds of classes whose unpickling runs their ``__setstate__`` /
constructors, which defeats ``weights_only``. A missing file is an error, never a random initialisation.
"""

from __future__ import annotations

import importlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

DEFAULT_CFG = "yolov5s.yaml"
# Exactly what a YOLOv5 checkpoint pickles besides tensors: the model class, its blocks and the torch layers
# inside them (enumerated from the checkpoints of yolov5n/s/nu/n6 built offline; tests/models/test_yolo_weights
# checks the list against a fresh one).
YOLOV5_CHECKPOINT_CLASSES = frozenset({
    "ultralytics.nn.tasks.DetectionModel",
    "ultralytics.nn.modules.block.Bottleneck", "ultralytics.nn.modules.block.C3", "ultralytics.nn.modules.block.DFL",
    "ultralytics.nn.modules.block.SPPF", "ultralytics.nn.modules.conv.Concat", "ultralytics.nn.modules.conv.Conv",
    "ultralytics.nn.modules.head.Detect",
    "torch.nn.modules.activation.SiLU", "torch.nn.modules.batchnorm.BatchNorm2d",
    "torch.nn.modules.container.ModuleList", "torch.nn.modules.container.Sequential",
    "torch.nn.modules.conv.Conv2d", "torch.nn.modules.pooling.MaxPool2d", "torch.nn.modules.upsampling.Upsample",
})
# Plain data types ultralytics checkpoints hold besides modules (train args, dates, versions).
ALLOWED_EXTRA = frozenset({"collections.OrderedDict", "builtins.set", "builtins.frozenset", "builtins.slice",
                           "types.SimpleNamespace", "pathlib.PosixPath", "pathlib.WindowsPath"})
_NAME = re.compile(r"^yolo[\w.\-]*$", re.IGNORECASE)


def is_yolo_name(name: str | None) -> bool:
    """True for ultralytics model names/yamls such as ``yolov5s.yaml`` or ``yolov5n``."""
    return bool(name) and bool(_NAME.match(str(name)))


def yaml_name(name: str | None) -> str:
    """``yolov5n`` -> ``yolov5n.yaml``; ``None`` -> the seed's default ``yolov5s.yaml``."""
    if not name:
        return DEFAULT_CFG
    return name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"


def build_yolo(cfg: str | dict, nc: int) -> nn.Module:
    """An ultralytics ``DetectionModel`` built offline from its yaml (ultralytics must be prepared first)."""
    from ultralytics.nn.tasks import DetectionModel

    try:
        return DetectionModel(cfg, nc=nc, verbose=False)
    except FileNotFoundError as exc:
        raise ValueError(f"unknown YOLO model {cfg!r}: {exc}") from None


def _resolve_global(name: str) -> type:
    module_name, _, attr = name.rpartition(".")
    if name not in YOLOV5_CHECKPOINT_CLASSES and name not in ALLOWED_EXTRA:
        raise ValueError(f"refusing to load {name[:200]!r}: a YOLOv5 checkpoint may only reference the classes of "
                         f"fedmist.models.yolo.YOLOV5_CHECKPOINT_CLASSES and plain data types")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise ValueError(f"refusing to load {name!r}: not a class")
    return obj


def safe_load_checkpoint(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` with an allowlist of the YOLOv5 classes the file names."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"weights file not found: {p} (refusing to fall back to random initialisation)")
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(p))
    except Exception as exc:  # noqa: BLE001 - torch raises many types; one clear message is what users need
        raise ValueError(f"cannot read weights from {p}: {str(exc).splitlines()[0]}") from None
    allowed = [_resolve_global(n) for n in names]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot read weights from {p}: {str(exc).splitlines()[0]}") from None


def infer_nc(state: dict[str, torch.Tensor]) -> int:
    """Number of classes from a detection state dict: the output channels of the head's first class conv."""
    for key, value in state.items():
        if re.fullmatch(r"model\.\d+\.cv3\.0\.2\.weight", key):
            return int(value.shape[0])
    raise ValueError("not a YOLO detection state dict (no model.<i>.cv3.0.2.weight entry)")


@dataclass
class YoloWeights:
    """A loaded detector and what is known about it."""

    model: nn.Module
    cfg: str
    nc: int
    names: list[str] = field(default_factory=list)
    source: str = ""


def _metadata(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(f"{path}.json").read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _names(raw: Any, nc: int) -> list[str]:
    if isinstance(raw, dict):
        return [str(raw.get(i, raw.get(str(i), i))) for i in range(nc)]
    if isinstance(raw, (list, tuple)) and len(raw) == nc:
        return [str(n) for n in raw]
    return [str(i) for i in range(nc)]


def load_yolo(path: str | Path, cfg: str | None = None) -> YoloWeights:
    """Load pretrained YOLO weights: an ultralytics checkpoint, or a state dict (+ optional metadata JSON).

    For a state dict the architecture is ``cfg`` (the job's ``model``), else the metadata's ``architecture``,
    else ``yolov5s.yaml``; the class count comes from the weights themselves.
    """
    p = Path(path)
    obj = safe_load_checkpoint(p)
    if isinstance(obj, dict) and isinstance(obj.get("ema") or obj.get("model"), nn.Module):
        model = (obj.get("ema") or obj["model"]).float()
        yaml = getattr(model, "yaml", {}) or {}
        arch = cfg or str(yaml.get("yaml_file") or DEFAULT_CFG)
        if cfg and Path(str(yaml.get("yaml_file", cfg))).stem.rstrip("u") != Path(cfg).stem.rstrip("u"):
            raise ValueError(f"{p} holds a {yaml.get('yaml_file')} model, but the job's model is {cfg}")
        nc = int(model.model[-1].nc)
        return YoloWeights(model, Path(arch).name, nc, _names(getattr(model, "names", None), nc), str(p))
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{p} holds neither an ultralytics checkpoint nor a state dict of tensors")
    state = {(k if k.startswith("model.") else f"model.{k}"): v for k, v in obj.items()}
    meta = _metadata(p)
    arch = yaml_name(cfg or meta.get("architecture"))
    nc = infer_nc(state)
    model = build_yolo(arch, nc)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = next((line for line in lines[1:]), lines[0] if lines else "")
        raise ValueError(f"{p} does not fit {arch}: {detail[:300]} (set env model to its yaml)") from None
    return YoloWeights(model, arch, nc, _names(meta.get("names"), nc), str(p))


def looks_like_yolo_file(path: str | Path) -> bool:
    """Whether a weights file holds a YOLO detector, decided without importing ultralytics or unpickling
    anything but tensors: an ultralytics checkpoint names ultralytics classes; a detection state dict has
    the head's ``cv3`` keys."""
    p = Path(path)
    if not p.is_file() or p.suffix == ".safetensors":
        return False
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(p))
    except Exception:  # noqa: BLE001 - not a torch zip file: the classification loader reports it
        return False
    if any(n.startswith("ultralytics.") for n in names):
        return True
    if names:
        return False
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001
        return False
    keys = obj.keys() if isinstance(obj, dict) else []
    return any(re.search(r"(^|\.)\d+\.cv3\.0\.2\.weight$", str(k)) for k in keys)


def save_ultralytics_checkpoint(model: nn.Module, path: Path, names: list[str], args: dict[str, Any]) -> Path:
    """A checkpoint ``ultralytics.YOLO(path)`` loads for prediction (its own format: a pickled model)."""
    import copy

    import ultralytics

    path.parent.mkdir(parents=True, exist_ok=True)
    clone = copy.deepcopy(model).float().eval()
    clone.names = dict(enumerate(names))
    clone.args = {**args, "task": "detect"}
    ckpt = {"model": clone, "ema": None, "updates": 0, "optimizer": None, "epoch": -1,
            "train_args": {**args, "task": "detect"}, "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "version": ultralytics.__version__}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)
    return path
