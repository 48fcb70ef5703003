"""The linter configuration in pyproject.toml holds for the whole tree (issue 18, point 8).

Runs ruff as `make test` runs pytest, so an unsorted import or an unused name fails CI with ruff's own
file:line:column message rather than waiting for a reviewer.
"""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> str:
    beside = Path(sys.executable).with_name("ruff")
    found = str(beside) if beside.exists() else shutil.which("ruff")
    assert found, "ruff is not installed: pip install -e '.[test]'"
    return found


def test_ruff_is_clean() -> None:
    done = subprocess.run([_ruff(), "check", "--no-cache", "src", "tests", "bench"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_config_selects_errors_unused_and_import_order() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    selected = set(config["tool"]["ruff"]["lint"]["select"])
    assert {"F", "I", "E9"} <= selected
