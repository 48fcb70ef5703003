"""Cutting a sequential model into the edge part ``[0, cut)`` and the cloud part ``[cut, end)`` (DESIGN 5.1)."""

from __future__ import annotations

import copy
from collections import OrderedDict

from torch import nn


def resolve_cut(model: nn.Module, cut_layer: int | str) -> int:
    """Return the index of the first cloud-side module.

    * an ``int`` (or a string of digits, as environment variables arrive) is that index itself;
    * any other string names a child module (``named_children``) and means "up to and including that
      layer", i.e. index + 1.
    Both parts must be non-empty, so the valid range is ``1 .. len - 1``.
    """
    names = [name for name, _ in model.named_children()]
    n = len(names)
    if isinstance(cut_layer, bool):
        raise ValueError(f"cut_layer must be an int or a layer name, got {cut_layer!r}")
    if isinstance(cut_layer, str):
        text = cut_layer.strip()
        if text.lstrip("-").isdigit():
            cut = int(text)
        elif text in names:
            cut = names.index(text) + 1
        else:
            raise ValueError(f"cut_layer {cut_layer!r} names no layer of the model; layers are {names}")
    elif isinstance(cut_layer, int):
        cut = cut_layer
    else:
        raise ValueError(f"cut_layer must be an int or a layer name, got {type(cut_layer).__name__}")
    if not 1 <= cut <= n - 1:
        raise ValueError(
            f"cut_layer {cut_layer!r} is out of range for a model with {n} modules: "
            f"use 1..{n - 1} (index of the first cloud module) so that both parts are non-empty"
        )
    return cut


def _sequential(children: list[tuple[str, nn.Module]]) -> nn.Sequential:
    """Renumber index-named children from 0 (state-dict keys ``0.weight``...); keep real names otherwise."""
    if all(name.isdigit() for name, _ in children):
        return nn.Sequential(*(module for _, module in children))
    return nn.Sequential(OrderedDict(children))


def split_model(model: nn.Sequential, cut_layer: int | str) -> tuple[nn.Sequential, nn.Sequential]:
    """Return independent copies ``(edge, cloud)``; ``cloud(edge(x)) == model(x)``.

    Copies rather than views: training the cloud part must not silently change a model object the caller
    still holds (the full model is rebuilt with :func:`fedmist.models.weights.merge_state_dicts`).
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"only nn.Sequential models can be split, got {type(model).__name__}")
    cut = resolve_cut(model, cut_layer)
    children = [(name, copy.deepcopy(module)) for name, module in model.named_children()]
    return _sequential(children[:cut]), _sequential(children[cut:])


def _is_parametric(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=True))


def drop_trailing_relus(edge: nn.Sequential) -> nn.Sequential:
    """The edge without the ReLUs after its last weighted layer, when only ReLU/max-pool/flatten follow it.

    It yields the same bits (``1[relu(x) > 0] = 1[x > 0]``, and max-pooling commutes with ReLU), which
    helps twice: extraction skips a pass over the largest activation, and channel-aware pretraining keeps
    the values below zero, so a unit that is off still gets a gradient that can turn it on. Otherwise
    (any other module after the last weighted one) the edge is returned unchanged. Modules are shared.
    """
    mods = list(edge)
    weighted = [i for i, m in enumerate(mods) if _is_parametric(m)]
    if not weighted:
        return edge
    head, tail = mods[: weighted[-1] + 1], mods[weighted[-1] + 1 :]
    if not all(isinstance(m, (nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.Flatten, nn.Identity)) for m in tail):
        return edge
    return nn.Sequential(*head, *(m for m in tail if not isinstance(m, nn.ReLU)))
