"""Any user model as MistNet's two parts: the split protocol (DESIGN 5.1 for models that are not LeNet-5).

fedmist cuts a model in one of three ways, tried in this order:

1. **nn.Sequential** -- modules ``[0, cut)`` go to the edge, ``[cut, end)`` to the cloud
   (:func:`fedmist.models.split.split_model`); ``cut_layer`` is an index or a child's name.
2. **fedmist_stages()** -- a method returning the model's stages in order (a list of modules, or a mapping
   ``name -> module``), such that ``model(x)`` equals applying the stages one after another. fedmist cuts that
   list exactly like a Sequential (index or stage name). The stages must be the model's own submodules, so
   training the cloud stages trains the model and ``model.state_dict()`` is the trained model.
3. **fedmist_split(cut_layer)** -- a method returning ``(edge, cloud)`` modules for an integer ``cut_layer``
   with ``cloud(edge(x)) == model(x)``, for models whose forward is not a chain (skip connections, several
   inputs...). Both parts must share their parameters with the model (views, not copies), for the same reason.
   Raise ``ValueError`` for a ``cut_layer`` the model cannot be cut at; fedmist shows the message.

Anything else is refused with one line that says which of the three to provide. A model factory is
``package.module:function`` returning an ``nn.Module``; it is called with ``num_classes=...`` when its
signature takes that argument (or ``**kwargs``), and with no arguments otherwise.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from fedmist.imports import ImportPathError, import_callable, is_import_path
from fedmist.models.registry import build_model
from fedmist.models.split import resolve_cut, split_model
from fedmist.models.weights import merge_state_dicts

StateDict = dict[str, torch.Tensor]
HOW_TO_SPLIT = ("make it an nn.Sequential, or give it a method fedmist_stages() returning its stages in order, "
                "or fedmist_split(cut_layer) returning (edge, cloud) modules")


@dataclass(frozen=True)
class ModelParts:
    """MistNet's view of a model: the edge part, the cloud part, the resolved cut and how to get the whole
    model's state dict back after the cloud part has trained."""

    edge: nn.Module
    cloud: nn.Module
    cut: int
    full_state: Callable[[], StateDict]


def build_job_model(name: str, num_classes: int = 10) -> nn.Module:
    """The job's model by built-in name or import path; every failure is a one-line ``ValueError``."""
    try:
        if not is_import_path(name):
            return build_model(name, num_classes=num_classes)
        factory = import_callable(name, "model factory")
        model = factory(**({"num_classes": num_classes} if _takes(factory, "num_classes") else {}))
    except ImportPathError:
        raise
    except (ValueError, TypeError) as exc:
        raise ImportPathError(f"model {name!r}: {_first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - a user factory failing is a configuration problem
        raise ImportPathError(f"model factory {name!r} failed: {type(exc).__name__}: {_first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ImportPathError(f"model factory {name!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def split_parts(model: nn.Module, cut_layer: int | str, name: str = "model") -> ModelParts:
    """Cut ``model`` at ``cut_layer`` by the protocol above; ``ValueError`` (one line) when it cannot be cut."""
    if isinstance(model, nn.Sequential) and all(child.isdigit() for child, _ in model.named_children()):
        cut = resolve_cut(model, cut_layer)
        edge, cloud = split_model(model, cut)
        return ModelParts(edge, cloud, cut, lambda: merge_state_dicts(edge.state_dict(), cloud.state_dict(), cut))
    if isinstance(model, nn.Sequential):
        return _cut_chain(model, model, cut_layer)
    stages = getattr(model, "fedmist_stages", None)
    if callable(stages):
        return _cut_chain(model, _as_sequential(stages(), name), cut_layer)
    custom = getattr(model, "fedmist_split", None)
    if callable(custom):
        return _custom_split(model, custom, cut_layer, name)
    raise ValueError(f"{name} ({type(model).__name__}) cannot be split for MistNet: {HOW_TO_SPLIT}")


def model_stages(model: nn.Module) -> nn.Sequential | None:
    """The model as a chain of modules (sharing its parameters) when it is sequential-like, else ``None``."""
    if isinstance(model, nn.Sequential):
        return model
    stages = getattr(model, "fedmist_stages", None)
    return _as_sequential(stages(), type(model).__name__) if callable(stages) else None


def _cut_chain(model: nn.Module, chain: nn.Sequential, cut_layer: int | str) -> ModelParts:
    """Views ``chain[:cut]`` and ``chain[cut:]``: they share the model's modules, so its state dict is current."""
    cut = resolve_cut(chain, cut_layer)
    return ModelParts(chain[:cut], chain[cut:], cut, model.state_dict)


def _as_sequential(stages: object, name: str) -> nn.Sequential:
    if isinstance(stages, Mapping):
        items = list(stages.items())
        if not all(isinstance(k, str) and isinstance(m, nn.Module) for k, m in items):
            raise ValueError(f"{name}.fedmist_stages() must map names to nn.Module stages")
        chain = nn.Sequential(OrderedDict(items))
    else:
        items = list(stages) if isinstance(stages, (list, tuple, nn.ModuleList, nn.Sequential)) else None
        if items is None or not all(isinstance(m, nn.Module) for m in items):
            raise ValueError(f"{name}.fedmist_stages() must return a list of nn.Module stages, "
                             f"got {type(stages).__name__}")
        chain = nn.Sequential(*items)
    if len(chain) < 2:
        raise ValueError(f"{name}.fedmist_stages() returned {len(chain)} stage(s); MistNet needs at least 2")
    return chain


def _custom_split(model: nn.Module, custom: Callable[..., object], cut_layer: int | str, name: str) -> ModelParts:
    if isinstance(cut_layer, str) and not cut_layer.strip().isdigit():
        raise ValueError(f"cut_layer {cut_layer!r}: {name} is split by fedmist_split(), which takes an integer "
                         f"cut_layer")
    cut = int(cut_layer)
    try:
        parts = custom(cut)
    except ValueError as exc:
        raise ValueError(f"cut_layer {cut}: {name}.fedmist_split: {_first_line(exc)}") from None
    if not (isinstance(parts, tuple) and len(parts) == 2 and all(isinstance(p, nn.Module) for p in parts)):
        raise ValueError(f"{name}.fedmist_split({cut}) must return a pair (edge, cloud) of nn.Modules, "
                         f"got {type(parts).__name__}")
    edge, cloud = parts
    return ModelParts(edge, cloud, cut, model.state_dict)


def _takes(factory: Callable[..., object], argument: str) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == argument or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
