"""``fedmist audit`` end to end on small real data: writes the table, JSON and PNG; bad input exits 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FMNIST = Path("/usr/share/datasets/fashion-mnist")
JOB = REPO / "examples" / "mnist-mistnet" / "job.yaml"


def fedmist(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedmist", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "2"})


@pytest.mark.e2e
def test_audit_cli_writes_frontier(tmp_path: Path) -> None:
    split = fedmist("data", "split", "--source", str(FMNIST), "--out", str(tmp_path / "data"), "--public", "2000",
                    "--edges", "1000,1000", "--seed", "2")
    assert split.returncode == 0, split.stderr
    pre = fedmist("pretrain", "--data", str(tmp_path / "data" / "public"), "--out",
                  str(tmp_path / "pretrained" / "lenet5.pth"), "--epochs", "1")
    assert pre.returncode == 0, pre.stderr
    out = tmp_path / "audit"
    run = fedmist("audit", "-f", str(JOB), "--path-map", f"/data={tmp_path / 'data'}",
                  "--path-map", f"/pretrained={tmp_path / 'pretrained'}", "--path-map", f"/model={tmp_path / 'model'}",
                  "--epsilons", "inf,1", "--victims", "100", "--likelihood-victims", "20", "--members", "200",
                  "--decoder-epochs", "1", "--likelihood-steps", "5", "--judge-epochs", "1", "--utility-epochs", "1",
                  "--out", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((out / "frontier.json").read_text())
    assert [r["epsilon"] for r in result["rows"]] == ["inf", 1.0]
    for row in result["rows"]:
        assert 0.0 <= row["attack_ssim"] <= 1.0 and 0.0 <= row["membership_auc"] <= 1.0
        assert row["privacy"]["features_per_sample"] == 1176
    assert result["rows"][1]["privacy"]["epsilon_per_sample"] == 1176.0
    table = (out / "frontier.md").read_text()
    assert "| job | inf | 1176 |" in table and "mean image" in table
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "audit of mnist-mistnet: 2 rows" in run.stdout


def test_audit_cli_bad_epsilon_list_is_one_line_exit_2() -> None:
    run = fedmist("audit", "-f", str(JOB), "--epsilons", "inf,2,abc")
    assert run.returncode == 2
    assert run.stderr == "error: --epsilons 'inf,2,abc': 'abc' must be a positive number or 'inf'\n"
