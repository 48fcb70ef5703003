"""Reading manifest files into a ``Bundle``: YAML parsing, per-document validation, url resolution.

Why a bundle: a job and the Datasets/Models/Secrets it names may sit in one multi-document file or in
several (``kubectl create -f a.yaml -f b.yaml`` habits). Everything is validated up front so a bad field is
reported, with file, document, field path and value, before any worker starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fedmist.spec.base import ignored_fields
from fedmist.spec.errors import ManifestError, ManifestWarning, loc_to_path
from fedmist.spec.manifests import KINDS, PYTHON_FORMAT, Dataset, FederatedLearningJob, Manifest, Model, Secret
from fedmist.spec.paths import normalize_path_map, resolve_import_url, resolve_url

# pydantic error types -> the wording users see; anything else falls back to pydantic's message.
_PROBLEMS: dict[str, str] = {
    "missing": "required field is missing",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "too_short": "must not be empty",
    "string_too_short": "must not be empty",
}


@dataclass
class Bundle:
    """All documents read, by kind and name, with the file each came from and the warnings raised."""

    datasets: dict[str, Dataset] = field(default_factory=dict)
    models: dict[str, Model] = field(default_factory=dict)
    secrets: dict[str, Secret] = field(default_factory=dict)
    jobs: dict[str, FederatedLearningJob] = field(default_factory=dict)
    sources: dict[tuple[str, str], Path] = field(default_factory=dict)
    warnings: list[ManifestWarning] = field(default_factory=list)
    files: tuple[Path, ...] = ()
    path_map: dict[str, str] = field(default_factory=dict)

    def of_kind(self, kind: str) -> dict[str, Any]:
        """The name -> object dict for ``kind`` (one of ``fedmist.spec.manifests.KINDS``)."""
        return {"Dataset": self.datasets, "Model": self.models, "Secret": self.secrets,
                "FederatedLearningJob": self.jobs}[kind]

    def source_of(self, kind: str, name: str) -> Path:
        """The file that defined ``kind``/``name``."""
        return self.sources[(kind, name)]

    def add(self, manifest: Manifest, path: Path) -> None:
        """Register a validated document; a second one of the same kind and name is an error."""
        collection = self.of_kind(manifest.kind)
        key = (manifest.kind, manifest.name)
        if manifest.name in collection:
            raise ManifestError(path, manifest.kind, manifest.name, "metadata.name",
                                f"duplicate {manifest.kind} name; first defined in {self.sources[key]}",
                                manifest.name)
        collection[manifest.name] = manifest
        self.sources[key] = path


def load_manifests(paths: Iterable[Path | str], path_map: dict[str, str] | None = None) -> Bundle:
    """Read and validate every document of every file. ``path_map`` ({"/data": "./somewhere"}) re-roots
    absolute host paths in ``url`` fields (longest prefix wins); relative urls are taken relative to the
    manifest's folder; ``s3://`` urls are kept. Raises ``ManifestError`` on the first problem."""
    bundle = Bundle(files=tuple(Path(p) for p in paths), path_map=normalize_path_map(path_map))
    for path in bundle.files:
        _add_documents(bundle, _read_documents(path), path)
    return bundle


def bundle_from_documents(documents: Iterable[Any], source: Path | str,
                          path_map: dict[str, str] | None = None) -> Bundle:
    """Validate documents built in memory (``fedmist.Job``) exactly as if they were read from ``source``:
    errors name ``source``, and relative urls resolve against its folder."""
    path = Path(source)
    bundle = Bundle(files=(path,), path_map=normalize_path_map(path_map))
    _add_documents(bundle, list(documents), path)
    return bundle


def _add_documents(bundle: Bundle, documents: list[Any], path: Path) -> None:
    for index, raw in enumerate(documents, start=1):
        if raw is None:
            continue
        manifest = _parse_document(raw, path, index, bundle.warnings)
        if manifest is not None:
            bundle.add(_resolve_urls(manifest, path, bundle.path_map), path)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one, hiding typos)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)):
            continue
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}",
                                                    key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _read_documents(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(path, None, None, None, f"cannot read manifest: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ManifestError(path, None, None, None, "cannot read manifest: not UTF-8 text") from None
    try:
        return list(yaml.load_all(text, Loader=_StrictLoader))
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(path, exc) from None
    except yaml.YAMLError as exc:
        raise ManifestError(path, None, None, None, f"YAML syntax error: {exc}") from None


def _yaml_error(path: Path, exc: yaml.MarkedYAMLError) -> ManifestError:
    """Line of the problem, plus where the enclosing construct began when that is elsewhere (an unclosed
    ``[`` is detected lines later)."""
    mark = exc.problem_mark or exc.context_mark
    problem = f"YAML syntax error: {exc.problem or exc.context}"
    if exc.problem and exc.context and exc.context_mark and mark and exc.context_mark.line != mark.line:
        problem += f" ({exc.context} started at line {exc.context_mark.line + 1})"
    return ManifestError(path, None, None, None, problem, line=mark.line + 1 if mark else None)


def _parse_document(raw: Any, path: Path, index: int, warnings: list[ManifestWarning]) -> Manifest | None:
    """Validate one document; unknown kinds are warned about and skipped (``None``)."""
    where = f"document {index}"
    if not isinstance(raw, dict):
        raise ManifestError(path, None, where, None, "a manifest document must be a mapping", raw)
    kind = raw.get("kind")
    metadata = raw.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    name = name if isinstance(name, str) and name else where
    model_cls = KINDS.get(kind) if isinstance(kind, str) else None
    if model_cls is None:
        problem = f"unknown kind {kind!r}; document skipped" if kind else "no kind; document skipped"
        warnings.append(ManifestWarning(str(path), None, where if kind is None else name, "kind", problem))
        return None
    if metadata is None and "name" in raw:
        raise ManifestError(path, kind, raw.get("name") if isinstance(raw.get("name"), str) else where,
                            "metadata", "is empty and 'name' sits at the top level; "
                            "the YAML indentation looks flattened")
    try:
        manifest = model_cls.model_validate(raw)
    except ValidationError as exc:
        raise _to_manifest_error(exc, path, kind, name) from None
    for field_path, message in [*ignored_fields(manifest), *manifest.notes()]:
        warnings.append(ManifestWarning(str(path), kind, manifest.name, field_path, message))
    return manifest


def _to_manifest_error(exc: ValidationError, path: Path, kind: str, name: str) -> ManifestError:
    """The first pydantic error as a one-line ``ManifestError`` with a kubectl-style field path."""
    error = exc.errors(include_url=False)[0]
    problem = _PROBLEMS.get(error["type"]) or error["msg"].removeprefix("Value error, ")
    field_path = loc_to_path(error["loc"])
    if error["type"] == "missing":
        return ManifestError(path, kind, name, field_path, problem)
    return ManifestError(path, kind, name, field_path, problem, error.get("input"))


def _resolve_urls(manifest: Manifest, path: Path, path_map: dict[str, str]) -> Manifest:
    """Replace Dataset/Model ``spec.url`` by its local meaning (see ``fedmist.spec.paths``)."""
    if not isinstance(manifest, (Dataset, Model)):
        return manifest
    if isinstance(manifest, Dataset) and manifest.spec.format == PYTHON_FORMAT:
        try:  # the user's loader by import path: not a file, so no relative/--path-map treatment of the path
            url = resolve_import_url(manifest.spec.url, path.parent, path_map)
        except ValueError as exc:
            raise ManifestError(path, manifest.kind, manifest.name, "spec.url",
                                f"{exc}; format python takes 'package.module:loader[?name=value&...]'",
                                manifest.spec.url) from None
        return manifest.model_copy(update={"spec": manifest.spec.model_copy(update={"url": url})})
    url = resolve_url(manifest.spec.url, path.parent, path_map)
    return manifest.model_copy(update={"spec": manifest.spec.model_copy(update={"url": url})})
