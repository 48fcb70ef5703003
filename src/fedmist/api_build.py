"""How the Python API (:mod:`fedmist.api`) turns its arguments into Sedna documents and loader urls.

Kept apart from ``api`` so the builder's small, pure helpers are testable on their own and ``api`` stays about
the user-facing objects. Imports neither torch nor the runtimes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedmist.imports import is_import_path
from fedmist.spec.manifests import PYTHON_FORMAT, SEDNA_API_VERSION

Value = str | int | float | bool


def unwrap_partial(data: Any, what: str) -> tuple[Any, dict[str, str]]:
    """``functools.partial(loader, root="/x")`` -> ``(loader, {"root": "/x"})``: bound keywords travel as the
    url's options (text), so a worker process can rebuild the call. Positional arguments cannot."""
    if not isinstance(data, functools.partial):
        return data, {}
    if data.args:
        raise ValueError(f"{what}: bind loader options by keyword (functools.partial(loader, root=...)), "
                         f"not by position")
    return data.func, {key: str(value) for key, value in data.keywords.items()}


def with_query(url: str, options: Mapping[str, str]) -> str:
    """``url`` with ``options`` appended as ``?name=value&...`` (values must not contain ``&``)."""
    for key, value in options.items():
        if "&" in str(value) or not key.isidentifier():
            raise ValueError(f"loader option {key}={value!r}: names must be identifiers and values must not contain '&'")
    if not options:
        return url
    return url + ("&" if "?" in url else "?") + "&".join(f"{k}={v}" for k, v in options.items())


def format_of(data: object, url: str) -> str:
    if (callable(data) and not isinstance(data, (str, Path))) or is_import_path(url):
        return PYTHON_FORMAT
    return {"txt": "txt", "csv": "csv"}.get(Path(url).suffix.lower().lstrip("."), "idx")


def suffix_of(url: str | Path) -> str:
    return Path(str(url)).suffix.lstrip(".") or "pth"


def sedna_doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": SEDNA_API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


def worker_template(node: str, env: Mapping[str, Value | None]) -> dict[str, Any]:
    values = [{"name": key, "value": env_text(value)} for key, value in env.items() if value is not None]
    return {"spec": {"nodeName": node, "containers": [{"image": "fedmist/worker:0.1", "name": "worker", "env": values}]}}


def env_text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return str(value)

