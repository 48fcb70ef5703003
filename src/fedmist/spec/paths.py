"""Where a manifest ``url`` points on this machine.

Sedna manifests name host paths (``/data/1/COCO``) of cluster nodes. Locally the same manifest must run
unchanged, so a relative url is taken relative to the manifest file's folder (the file can move with its
data), and ``--path-map SRC=DST`` re-roots absolute host paths by prefix. Remote urls (``s3://...``) are
left alone: the transmitter or loader deals with them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath


def is_remote(url: str) -> bool:
    """True for ``scheme://...`` urls (s3, http, ...), which are never rewritten."""
    return "://" in url


def normalize_path_map(path_map: Mapping[str, str] | None, cwd: Path | None = None) -> dict[str, str]:
    """Canonical form of a path map: SRC without trailing slash, DST absolute (relative DST against the
    current directory at the time of the call, so a later ``chdir`` in a worker does not move the data)."""
    base = Path.cwd() if cwd is None else cwd
    result: dict[str, str] = {}
    for src, dst in (path_map or {}).items():
        key = os.path.normpath(src or "/")
        target = Path(os.path.expanduser(dst))
        result[key] = os.path.normpath(target if target.is_absolute() else base / target)
    return result


def _apply_map(path: str, path_map: Mapping[str, str]) -> str | None:
    """Re-root ``path`` under the longest matching SRC prefix (matching whole path components only,
    so ``/data`` maps ``/data/1`` but not ``/database``)."""
    parts = PurePosixPath(path).parts
    best: tuple[int, str] | None = None
    for src, dst in path_map.items():
        src_parts = PurePosixPath(src).parts
        if parts[: len(src_parts)] == src_parts and (best is None or len(src_parts) > best[0]):
            best = (len(src_parts), dst)
    if best is None:
        return None
    rest = parts[best[0]:]
    return os.path.normpath(os.path.join(best[1], *rest)) if rest else best[1]


def resolve_url(url: str, base_dir: Path, path_map: Mapping[str, str] | None = None) -> str:
    """The local path (or untouched remote url) for a manifest url found in a file under ``base_dir``.
    ``path_map`` must be normalized (see ``normalize_path_map``)."""
    if not url or is_remote(url):
        return url
    if os.path.isabs(url):
        mapped = _apply_map(os.path.normpath(url), path_map or {})
        return mapped if mapped is not None else os.path.normpath(url)
    return os.path.normpath(Path(base_dir).absolute() / url)


def _is_host_path(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~")) or value in (".", "..")


def resolve_import_url(url: str, base_dir: Path, path_map: Mapping[str, str] | None = None) -> str:
    """A ``format: python`` url (``package.module:loader?root=./pngs&split=edge1``) as the worker will use it.

    The import path itself is never a file path, so it is left alone; option values that are host paths
    (starting with ``/``, ``./``, ``../`` or ``~``) are resolved like any url -- relative to the manifest's
    folder, re-rooted by ``--path-map`` -- so a loader's data folder moves with the job exactly as an IDX
    folder does. Raises ``ValueError`` for a url that is not an import path.
    """
    from fedmist.imports import parse_query, split_import_path

    module, attr, query = split_import_path(url, "dataset loader")
    options = parse_query(query, f"dataset loader {url!r}")
    if not options:
        return f"{module}:{attr}"
    resolved = {key: (resolve_url(os.path.expanduser(value), base_dir, path_map) if _is_host_path(value) else value)
                for key, value in options.items()}
    return f"{module}:{attr}?" + "&".join(f"{key}={value}" for key, value in resolved.items())
