"""A worker's own progress report: a small JSON file rewritten atomically as the worker moves.

The local launcher polls these files to draw progress and build ``status.json``; on Kubernetes the same dict
is what the aggregator publishes. Writes are throttled so a hot loop cannot turn into a disk loop.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any

from fedmist.atomic import write_json_atomic


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class Reporter:
    """Holds the worker's report dict and writes it to ``path`` (if any) at most every ``interval`` seconds."""

    def __init__(self, path: Path | None, worker: str, role: str, interval: float = 0.25) -> None:
        self.path = path
        self.interval = interval
        self._last = 0.0
        self.data: dict[str, Any] = {"worker": worker, "role": role, "pid": os.getpid(), "phase": "Starting"}

    def update(self, force: bool = False, **fields: Any) -> None:
        self.data.update(fields)
        now = time.monotonic()
        if self.path is not None and (force or now - self._last >= self.interval):
            self.data["peak_rss_mb"] = peak_rss_mb()
            self.data["updated"] = time.time()
            write_json_atomic(self.path, self.data)
            self._last = now

    def flush(self) -> None:
        self.update(force=True)


def record_failure(path: Path | None, worker: str, role: str, message: str) -> None:
    """Mark a worker's report Failed with a one-line reason, keeping what it already reported."""
    if path is None:
        return
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {"worker": worker, "role": role, "pid": os.getpid()}
    data.update(phase="Failed", error=message, updated=time.time(), peak_rss_mb=peak_rss_mb())
    write_json_atomic(path, data)
