"""Unique, DNS-label-safe worker names from templates' ``nodeName``.

Why: locally a worker's name keys its log file, status entry and feature store, so it must be unique and
path/URL safe. Sedna docs write ``nodeName: $EDGE1_NODE`` expecting the shell to expand it before
``kubectl create``; we expand it from the environment when set, else keep a readable form (``edge1-node``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Final

_SHELL_VARIABLE: Final = re.compile(r"^\$(?:\{(?P<braced>\w+)\}|(?P<plain>\w+))$")
_NOT_DNS: Final = re.compile(r"[^a-z0-9-]+")
_DASHES: Final = re.compile(r"-{2,}")
DNS_LABEL_MAX: Final = 63
_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def expand_node_name(raw: str, environ: Mapping[str, str]) -> str:
    """``$VAR`` / ``${VAR}`` becomes the variable's value when it is set and non-empty; else ``raw``."""
    match = _SHELL_VARIABLE.match(raw.strip())
    if match is None:
        return raw
    return environ.get(match["braced"] or match["plain"]) or raw


def dns_label(text: str) -> str:
    """Lower-case letters, digits and inner dashes, at most 63 characters (RFC 1123 label)."""
    label = _DASHES.sub("-", _NOT_DNS.sub("-", text.lower())).strip("-")
    return label[:DNS_LABEL_MAX].rstrip("-")


def is_dns_label(name: str) -> bool:
    """Whether ``name`` is already an RFC 1123 label (Kubernetes' rule for names): ``[a-z0-9]([-a-z0-9]*[a-z0-9])?``,
    at most 63 characters. Why a check and not :func:`dns_label`: a name from the wire that is not a label is
    refused, never silently rewritten into one that may belong to another worker."""
    return len(name) <= DNS_LABEL_MAX and _DNS_LABEL.fullmatch(name) is not None


def unique_names(candidates: Sequence[str]) -> list[str]:
    """Keep names that occur once; give each member of a repeated name a ``-<i>`` suffix (1-based within
    the group), skipping suffixes that would collide with another name."""
    counts = Counter(candidates)
    taken = {name for name, count in counts.items() if count == 1}
    seen: Counter[str] = Counter()
    result: list[str] = []
    for name in candidates:
        if counts[name] == 1:
            result.append(name)
            continue
        while True:
            seen[name] += 1
            suffix = f"-{seen[name]}"
            candidate = name[: DNS_LABEL_MAX - len(suffix)] + suffix
            if candidate not in taken:
                break
        taken.add(candidate)
        result.append(candidate)
    return result
