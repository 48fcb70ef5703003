"""Errors and warnings about manifests and the env contract, each rendered as ONE line.

Why one line: a user running ``fedmist run -f job.yaml`` must see at a glance which file, which document,
which field and which value is wrong, and tools (CI logs, editors) can grep or jump to it. The format is

    <file>[:<line>]: <Kind>/<name>: <field.path>: <problem> (got <value repr>)

where a part that does not apply is left out (a YAML syntax error has a line but no document; a missing
field has no value to show).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final


class _NoValue:
    """Marks "no value to show" (e.g. a missing field), which differs from a value that is ``None``."""

    def __repr__(self) -> str:
        return "NO_VALUE"

    def __reduce__(self) -> str:
        # Pickles as a reference to the module constant, so identity checks survive a round trip.
        return "NO_VALUE"


NO_VALUE: Final = _NoValue()
_MAX_VALUE_REPR = 120


def _value_repr(value: object) -> str:
    """repr() of the offending value, shortened so the message stays readable on one line."""
    text = repr(value).replace("\n", "\\n")
    if len(text) > _MAX_VALUE_REPR:
        text = text[: _MAX_VALUE_REPR - 3] + "..."
    return text


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def format_location(file: str | None, line: int | None, kind: str | None, name: str | None,
                    field: str | None) -> list[str]:
    """The leading ``file: Kind/name: field`` parts shared by errors and warnings."""
    parts: list[str] = []
    if file is not None:
        parts.append(f"{file}:{line}" if line is not None else str(file))
    if kind:
        parts.append(f"{kind}/{name}" if name else f"{kind}/?")
    elif name:
        parts.append(name)
    if field:
        parts.append(field)
    return parts


class ManifestError(Exception):
    """A manifest (or a value derived from one) is wrong; ``str()`` is the one-line report.

    Fields: ``file`` (as the user named it, or ``<env>``), ``kind`` and ``name`` of the document,
    ``field`` (dotted path like ``spec.trainingWorkers[0].dataset.name``), ``problem`` (what is wrong, in
    words), ``value`` (the offending value, or ``NO_VALUE``) and ``line`` (1-based, when known).
    """

    def __init__(self, file: str | Path | None, kind: str | None, name: str | None, field: str | None,
                 problem: str, value: Any = NO_VALUE, *, line: int | None = None) -> None:
        self.file = None if file is None else str(file)
        self.kind = kind
        self.name = name
        self.field = field
        self.problem = _one_line(problem)
        self.value = value
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = format_location(self.file, self.line, self.kind, self.name, self.field)
        message = self.problem
        if self.value is not NO_VALUE:
            message += f" (got {_value_repr(self.value)})"
        return ": ".join([*parts, message])

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions cross process boundaries (launcher <-> workers); keep every field when pickled locally.
        return (_rebuild, (type(self), self.file, self.kind, self.name, self.field, self.problem,
                           self.value, self.line))


def _rebuild(cls: type[ManifestError], file: str | None, kind: str | None, name: str | None,
             field: str | None, problem: str, value: Any, line: int | None) -> ManifestError:
    return cls(file, kind, name, field, problem, value, line=line)


class ParamError(ManifestError):
    """A user-set env parameter (``epsilon``, ``epochs``, ...) is missing or malformed.

    From a process environment: file ``<env>``, field the variable name (``epsilon``). From a manifest:
    the job file and the full template path (``spec.aggregationWorker.template.spec.containers[0].env.epsilon``).
    """


@dataclass(frozen=True)
class ManifestWarning:
    """Something was ignored (unknown field or kind); returned, not raised, so the CLI can print it."""

    file: str
    kind: str | None
    name: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        return ": ".join([*format_location(self.file, None, self.kind, self.name, self.field), self.message])


def loc_to_path(loc: Sequence[str | int], prefix: str = "") -> str:
    """Turn a pydantic error ``loc`` like ``('spec', 'trainingWorkers', 0, 'dataset')`` into
    ``spec.trainingWorkers[0].dataset`` — the form users know from kubectl and the Sedna docs."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path
