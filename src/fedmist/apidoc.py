"""Write the Python API reference (``docs/API.md``) from the docstrings: ``python -m fedmist.apidoc [OUT]``.

Why a small generator instead of pdoc/sphinx: the page is committed, reviewed as a diff, and a test checks it
matches the code (``make api-docs`` rewrites it), with no extra dependency. It documents the names a user
of the Python API touches: the job API, the trainer interface, the strategy interface, the split protocol
and the loader contract.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

#: (module, names to document; empty = only the module docstring)
SECTIONS: Final = (
    ("fedmist.api", ("Job", "Edge", "RunResult", "pretrain")),
    ("fedmist.training", ("Trainer", "SGDTrainer", "LocalConfig", "LocalResult", "resolve_trainer")),
    ("fedmist.strategy.base", ("Strategy",)),
    ("fedmist.models.parts", ("build_job_model", "split_parts", "ModelParts")),
    ("fedmist.data.python_loader", ("load_python_dataset", "materialize")),
    ("fedmist.imports", ("ImportPathError", "import_object", "path_of")),
)
HEADER: Final = ("# fedmist Python API reference\n\n"
                 "Generated from the docstrings by `make api-docs` (`python -m fedmist.apidoc docs/API.md`); "
                 "do not edit by hand. `import fedmist` gives `fedmist.Job`, `fedmist.Edge`, "
                 "`fedmist.RunResult` and `fedmist.pretrain` (loaded on first use; no torch at import).\n\n")


def _doc(obj: Any) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip() or "(no docstring)"


def _signature(obj: Any) -> str:
    """The call signature with evaluated annotations, module prefixes and ``self``/``cls`` dropped."""
    try:
        signature = inspect.signature(obj, eval_str=True)
    except (TypeError, ValueError, NameError):
        try:
            signature = inspect.signature(obj)
        except (TypeError, ValueError):
            return "(...)"
    params = [p for name, p in signature.parameters.items() if name not in ("self", "cls")]
    text = str(signature.replace(parameters=params))
    text = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text)
    text = re.sub(r"\b(?:[a-z_][\w]*\.)+([A-Za-z_]\w*)", r"\1", text)
    return text.replace("NoneType", "None")


def _members(cls: type) -> Iterator[tuple[str, Any]]:
    """Public methods and properties defined by ``cls`` itself, in source order."""
    for name, member in cls.__dict__.items():
        if name.startswith("_") and name != "__init__":
            continue
        if name == "__init__" or isinstance(member, (property, classmethod, staticmethod)) or inspect.isfunction(member):
            yield name, member


def _class_section(name: str, cls: type) -> list[str]:
    bases = [b.__name__ for b in cls.__bases__ if b not in (object, Exception)]
    head = f"### class `{name}{_signature(cls)}`" + (f" (subclass of {', '.join(bases)})" if bases else "")
    lines = [head, "", _doc(cls), ""]
    for member_name, member in _members(cls):
        if member_name == "__init__":
            continue
        if isinstance(member, property):
            lines += [f"- **`{member_name}`** (property): {_doc(member.fget).splitlines()[0]}"]
            continue
        function = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
        kind = "classmethod " if isinstance(member, classmethod) else ""
        lines += [f"- {kind}**`{member_name}{_signature(function)}`**", "",
                  "  " + _doc(function).replace("\n", "\n  "), ""]
    return lines + [""]


def _function_section(name: str, function: Any) -> list[str]:
    return [f"### `{name}{_signature(function)}`", "", _doc(function), "", ""]


def render() -> str:
    """The whole reference page as Markdown."""
    lines = [HEADER]
    for module_name, names in SECTIONS:
        module = importlib.import_module(module_name)
        lines += [f"## `{module_name}`", "", _doc(module), ""]
        for name in names:
            obj = getattr(module, name)
            lines += _class_section(name, obj) if inspect.isclass(obj) else _function_section(name, obj)
    return "\n".join(line.rstrip() for line in lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if args:
        Path(args[0]).parent.mkdir(parents=True, exist_ok=True)
        Path(args[0]).write_text(text, encoding="utf-8")
        print(f"wrote {args[0]}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
