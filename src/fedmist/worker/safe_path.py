"""The one way a name that came from a peer becomes a path: :func:`safe_child`.

Why a helper and not ``root / name``: a worker name arrives in a frame header, and ``Path("/store") / "../x"``
or ``Path("/store") / "/x"`` point outside the store. Names are checked where they enter (the envelope accepts
only DNS-1123 labels), and this is the second wall: whatever the caller passes, the result is a direct child
of ``root`` or a :class:`ValueError` -- never a path that resolves anywhere else (``..``, absolute names,
separators, NUL, or a symlink planted inside the root).
"""

from __future__ import annotations

import os
from pathlib import Path


class UnsafeName(ValueError):
    """A name that would not stay inside its root; the message names it (repr, cut) and the root."""


def safe_child(root: Path, name: str) -> Path:
    """``root / name`` when ``name`` is one plain path component that resolves to a direct child of
    ``root``; else :class:`UnsafeName`."""
    if (not name or name in (".", "..") or "\x00" in name or "/" in name
            or (os.altsep is not None and os.altsep in name) or os.sep in name):
        raise UnsafeName(f"name {name[:80]!r} is not a single path component under {root}")
    child = root / name
    base = root.resolve()
    if child.resolve().parent != base:  # e.g. a symlink inside the root pointing elsewhere
        raise UnsafeName(f"name {name[:80]!r} resolves outside {root}")
    return child
