"""The ``device`` job setting: where a worker's torch work runs (``cpu`` by default, ``cuda`` when asked).

Why an explicit setting and a hard error: a job that asked for a GPU and silently trained on the CPU would
report timings and costs for the wrong machine; one that never asked should not grab a GPU it shares.
"""

from __future__ import annotations

import torch

DEFAULT_DEVICE = "cpu"


def resolve_device(name: str | None) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` -> a usable ``torch.device``; ``ValueError`` (one line) when the machine has
    no such device."""
    text = (name or DEFAULT_DEVICE).strip().lower()
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {text}: no CUDA GPU is available to torch on this machine "
                             f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); use device: cpu")
        device = torch.device(text)
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return device
    raise ValueError(f"device {text!r}: use cpu, cuda or cuda:N")


def describe(device: torch.device) -> str:
    """What status.json shows: ``cpu`` or ``cuda:0 (NVIDIA H100 ...)``."""
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device.index or 0)})"
    return "cpu"
