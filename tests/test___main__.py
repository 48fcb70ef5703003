"""fedmist.__main__ is a thin entrypoint (``python -m fedmist`` = ``fedmist``); its seam: argv reaches the CLI
and the CLI's exit code becomes the process's."""

from __future__ import annotations

import runpy

import pytest


def test_python_m_fedmist_exits_with_the_cli_code(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setattr("sys.argv", ["fedmist", "validate", "-f", str(tmp_path / "none.yaml")])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("fedmist", run_name="__main__")
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'none.yaml'}: cannot read manifest")
