"""Loading and saving weights without pickle, and slicing state dicts at a MistNet cut.

``.pth``/``.pt`` go through ``torch.load(weights_only=True)`` (no arbitrary code); ``.safetensors`` through
safetensors. A missing file is an error, never a silent random initialisation (a known defect of the
anchors, DESIGN 5).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import numpy as np

StateDict = dict[str, torch.Tensor]
_WRAPPER_KEYS = ("state_dict", "model")


def load_weights(path: str | os.PathLike[str]) -> StateDict:
    """Read a state dict from ``.pth``/``.pt`` (plain, or under a "state_dict"/"model" key) or ``.safetensors``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"weights file not found: {p} (refusing to fall back to random initialisation)")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(p)))
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types; one clear message is what users need
        raise ValueError(f"cannot read weights from {p}: {exc}") from exc
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{p} does not hold a state dict of tensors (nor one under 'state_dict'/'model')")
    return {str(k): v for k, v in obj.items()}


def save_weights(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> Path:
    """Write atomically (temp file in the same folder, then rename) so readers never see a half file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(tensors, tmp)
        else:
            torch.save(tensors, tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _split_key(key: str) -> tuple[int, str]:
    """``"3.weight"`` -> ``(3, "weight")``; state dicts of flat ``nn.Sequential`` models only."""
    head, sep, rest = key.partition(".")
    if not head.isdigit() or not sep:
        raise ValueError(f"state-dict key {key!r} is not of the form '<module index>.<name>'")
    return int(head), rest


def edge_state_dict(state_dict: Mapping[str, torch.Tensor], cut: int) -> StateDict:
    """Entries of modules ``[0, cut)``, keys unchanged."""
    return {k: v for k, v in state_dict.items() if _split_key(k)[0] < cut}


def cloud_state_dict(state_dict: Mapping[str, torch.Tensor], cut: int) -> StateDict:
    """Entries of modules ``[cut, end)``, renumbered from 0 (full ``"3.weight"`` -> cloud ``"0.weight"`` at cut 3)."""
    out: StateDict = {}
    for k, v in state_dict.items():
        index, rest = _split_key(k)
        if index >= cut:
            out[f"{index - cut}.{rest}"] = v
    return out


def merge_state_dicts(edge_sd: Mapping[str, torch.Tensor], cloud_sd: Mapping[str, torch.Tensor], cut: int) -> StateDict:
    """Inverse of the two slicers: the full model's state dict."""
    out: StateDict = {}
    for k, v in edge_sd.items():
        index, _ = _split_key(k)
        if index >= cut:
            raise ValueError(f"edge key {k!r} belongs to the cloud side of cut {cut}")
        out[k] = v
    for k, v in cloud_sd.items():
        index, rest = _split_key(k)
        out[f"{index + cut}.{rest}"] = v
    return out


def share_numpy_state(model: torch.nn.Module, arrays: Mapping[str, "np.ndarray"]) -> None:
    """Make ``model``'s parameters and buffers *be* ``arrays`` (writable numpy views), without copying.

    Why: the FedAvg aggregator keeps the global model as one safetensors buffer (what it sends every round);
    pointing the torch model (used only to test and save) at that buffer means the process holds the global
    model once, not twice. Keys, shapes and dtypes must match the model's state dict exactly.
    """
    state = model.state_dict()
    if set(arrays) != set(state):
        missing, unexpected = sorted(set(state) - set(arrays)), sorted(set(arrays) - set(state))
        raise ValueError(f"weights do not fit the model (missing {missing[:4]}, unexpected {unexpected[:4]})")
    tensors = {}
    for key, target in state.items():
        tensor = torch.from_numpy(arrays[key])
        if tensor.shape != target.shape or tensor.dtype != target.dtype:
            raise ValueError(f"{key}: {tuple(tensor.shape)} {tensor.dtype} does not fit {tuple(target.shape)} "
                             f"{target.dtype}")
        tensors[key] = tensor
    model.load_state_dict(tensors, assign=True)
