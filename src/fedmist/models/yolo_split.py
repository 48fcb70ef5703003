"""Cutting an ultralytics detection model into an edge part and a cloud part (DESIGN section 5.1).

``DetectionModel.model`` is a Sequential whose modules carry ``.f`` (from-indices: ``-1`` is the previous
module's output, other values index earlier outputs) and ``.i``; ``model.save`` lists the outputs later
modules read. ``cut_layer`` keeps DESIGN's meaning: the edge runs modules ``0 .. cut-1``, the cloud the rest.
The cloud part keeps the skip connections among its own modules. It receives only the last edge output, so a
cut where a cloud module reads any other edge output (e.g. YOLOv5's head concatenating backbone stage 4 when
the cut is after module 5) is refused with a message naming both modules — the edge would otherwise have to
upload several feature maps, which multiplies the bits (and the privacy cost) per image.

Both parts register their modules under the full model's names (``model.<i>``), so their state dicts are
slices of the full model's and merge back by plain union.
"""

from __future__ import annotations

import torch
from torch import nn


def _from_indices(module: nn.Module) -> list[int]:
    f = getattr(module, "f", -1)
    return [f] if isinstance(f, int) else list(f)


def _absolute(index: int, position: int) -> int:
    """A from-index as an absolute module index (``-1`` is the module just before ``position``)."""
    return position + index if index < 0 else index


def check_cut(layers: nn.Sequential, cut: int) -> None:
    """Refuse a cut where a cloud module needs an edge output other than the last edge module's."""
    n = len(layers)
    if not 1 <= cut <= n - 1:
        raise ValueError(f"cut_layer {cut} is out of range for a model with {n} modules: use 1..{n - 1} "
                         f"(index of the first cloud module) so that both parts are non-empty")
    for position in range(cut, n):
        for index in _from_indices(layers[position]):
            source = _absolute(index, position)
            if source < cut - 1:
                raise ValueError(
                    f"cut_layer {cut}: cloud module {position} ({type(layers[position]).__name__}) reads the "
                    f"output of edge module {source}, but the edge uploads only module {cut - 1}'s output; "
                    f"choose a cut at or before {source + 1}")


class _Part(nn.Module):
    """Modules ``[start, stop)`` of a detection model, run with ultralytics' from-index routing."""

    def __init__(self, layers: nn.Sequential, start: int, stop: int, save: list[int]) -> None:
        super().__init__()
        self.start, self.stop = start, stop
        self.save = sorted(set(save))
        self.model = nn.Module()
        for i in range(start, stop):
            self.model.add_module(str(i), layers[i])

    def layers(self) -> list[nn.Module]:
        return [getattr(self.model, str(i)) for i in range(self.start, self.stop)]

    def run(self, x: object) -> object:
        outputs: dict[int, object] = {self.start - 1: x}
        for position, module in zip(range(self.start, self.stop), self.layers()):
            sources = [_absolute(j, position) for j in _from_indices(module)]
            if isinstance(getattr(module, "f", -1), int):
                x = outputs[sources[0]]
            else:
                x = [outputs[s] for s in sources]
            x = module(x)
            outputs[position] = x
            for stale in [k for k in outputs if k < position and k not in self.save and k != position]:
                del outputs[stale]
        return x


class EdgePart(_Part):
    """Modules ``0 .. cut-1``: image batch -> the last edge module's feature map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)  # type: ignore[return-value]


class CloudPart(_Part):
    """Modules ``cut .. end``: the edge feature map -> the Detect head's output (train or eval form)."""

    def forward(self, x: torch.Tensor) -> object:
        return self.run(x)


def split_detection_model(model: nn.Module, cut: int) -> tuple[EdgePart, CloudPart]:
    """Split an ultralytics ``DetectionModel`` (or any model with ``.model``/``.save`` of that form).

    The parts share modules with ``model``: training the cloud part trains ``model``'s layers, so the full
    model is ready to save afterwards without any merging step.
    """
    layers = model.model
    check_cut(layers, cut)
    save = list(getattr(model, "save", []))
    return EdgePart(layers, 0, cut, save), CloudPart(layers, cut, len(layers), save)
