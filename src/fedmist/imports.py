"""Import paths (``package.module:attribute``): how users name their own model, loader, trainer and strategy.

One place resolves them so every kind of user code fails the same way: a :class:`ImportPathError` whose
message is one line naming what was being loaded, the path and what to fix. This module is light (no torch):
the CLI uses it to check a job's import paths before any worker process starts.

Where imports look: ``sys.path`` as usual, plus the folders a job adds with :func:`search_path` (the job
file's folder, so a user package beside ``job.yaml`` needs no install). Worker processes get the same folders
through ``PYTHONPATH`` (see :func:`python_path_env`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

#: ``package.module:attr`` (the attribute may be dotted: ``mod:Class.build``); optional ``?key=value&...``.
IMPORT_PATH: Final = re.compile(r"^(?P<module>[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*):(?P<attr>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)"
                                r"(?:\?(?P<query>.*))?$")


class ImportPathError(ValueError):
    """An import path does not lead to usable user code; ``str()`` is the one-line reason."""


def is_import_path(text: str) -> bool:
    """True for ``package.module:attr`` (with or without a ``?query``) -- never for a file path or url."""
    return bool(IMPORT_PATH.match(text.strip()))


def split_import_path(text: str, what: str = "import path") -> tuple[str, str, str]:
    """``(module, attribute, query)`` of ``package.module:attr[?query]``; the query may be empty."""
    match = IMPORT_PATH.match(text.strip())
    if match is None:
        raise ImportPathError(f"{what} {text!r} must look like 'package.module:name'")
    return match["module"], match["attr"], match["query"] or ""


def parse_query(query: str, what: str = "import path") -> dict[str, str]:
    """``a=1&b=x`` -> ``{"a": "1", "b": "x"}``. Values are plain text (no percent-decoding; no ``&`` inside)."""
    options: dict[str, str] = {}
    for part in filter(None, query.split("&")):
        key, sep, value = part.partition("=")
        if not sep or not key.isidentifier():
            raise ImportPathError(f"{what}: option {part!r} must look like name=value")
        options[key] = value
    return options


def import_object(path: str, what: str = "object") -> Any:
    """The object ``package.module:attr`` names (any ``?query`` is ignored here).

    ``what`` says what the object is for ("model factory", "dataset loader"...), so the message of a missing
    module or attribute tells the user which setting to fix.
    """
    module_name, attr, _ = split_import_path(path, what)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportPathError(f"{what} {path!r}: cannot import module {module_name!r} ({_first_line(exc)}); "
                              f"put the package beside the job file, in the current folder or on PYTHONPATH") from None
    except Exception as exc:  # noqa: BLE001 - user code failing at import is reported, not raised through
        raise ImportPathError(f"{what} {path!r}: importing {module_name!r} failed: "
                              f"{type(exc).__name__}: {_first_line(exc)}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportPathError(f"{what} {path!r}: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def import_callable(path: str, what: str) -> Any:
    """Like :func:`import_object`, and the object must be callable (a function or a class)."""
    obj = import_object(path, what)
    if not callable(obj):
        raise ImportPathError(f"{what} {path!r} is a {type(obj).__name__}, not a callable")
    return obj


def import_subclass(path: str, base: type, what: str) -> type:
    """Like :func:`import_object`, and the object must be a concrete subclass of ``base``."""
    obj = import_object(path, what)
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise ImportPathError(f"{what} {path!r} must be a subclass of {base.__module__}.{base.__qualname__}, "
                              f"got {_describe(obj)}")
    abstract = sorted(getattr(obj, "__abstractmethods__", ()) or ())
    if abstract:
        raise ImportPathError(f"{what} {path!r} is abstract: implement {', '.join(abstract)}")
    return obj


def path_of(obj: Any, what: str = "object") -> str:
    """The import path ``module:qualname`` of a function or class, so a worker process can import it.

    Objects a separate process cannot import -- lambdas, nested functions, things defined in ``__main__`` --
    are refused with a one-line reason.
    """
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname:
        raise ImportPathError(f"{what} {obj!r} has no module-level name; pass a function or class, or "
                              f"'package.module:name'")
    if module == "__main__":
        raise ImportPathError(f"{what} {qualname} is defined in the script being run (__main__), which worker "
                              f"processes cannot import; move it into a module and import it from there")
    if "<" in qualname:
        raise ImportPathError(f"{what} {module}.{qualname} is a lambda or nested definition; worker processes can "
                              f"only import module-level functions and classes")
    return f"{module}:{qualname}"


def module_root(obj: Any) -> str | None:
    """The ``sys.path`` folder the top-level package of ``obj``'s module was imported from, if any."""
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    file = getattr(module, "__file__", None)
    if not file or module is None:
        return None
    depth = module.__name__.count(".") + (1 if Path(file).name == "__init__.py" else 0)
    root = Path(file).resolve().parent
    for _ in range(depth):
        root = root.parent
    return str(root)


@contextlib.contextmanager
def search_path(folders: Iterable[str | Path]) -> Iterator[None]:
    """Temporarily put ``folders`` (and the current folder) at the front of ``sys.path`` for user imports."""
    added = [str(Path(f).resolve()) for f in [*folders, Path.cwd()]]
    added = [f for i, f in enumerate(added) if f not in added[:i] and f not in sys.path]
    sys.path[:0] = added
    importlib.invalidate_caches()
    try:
        yield
    finally:
        for folder in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)


def python_path_env(folders: Iterable[str | Path], environ: Mapping[str, str]) -> str:
    """``PYTHONPATH`` for a worker process: ``folders`` first, then what ``environ`` already had."""
    items = [str(Path(f).resolve()) for f in folders]
    items += [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(items))


def _describe(obj: Any) -> str:
    return obj.__qualname__ if isinstance(obj, type) else f"a {type(obj).__name__}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
