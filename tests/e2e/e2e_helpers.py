"""Helpers shared by the end-to-end tests: run the real CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FMNIST = Path("/usr/share/datasets/fashion-mnist")
REPO = Path(__file__).resolve().parents[2]


def fedmist(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI as a user would (``python -m fedmist`` of this checkout's venv)."""
    return subprocess.run([sys.executable, "-m", "fedmist", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})})
