"""The zygote forks real worker processes: each gets its own env, folder, log and exit code, and a dead zygote
makes the launcher fall back to starting interpreters (never a failed job)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from fedmist.launch.spawn import Zygote

REPO = Path(__file__).resolve().parents[2]
JOB = REPO / "examples" / "mnist-mistnet" / "job.yaml"
FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture()
def zygote(tmp_path: Path):
    z = Zygote(tmp_path / "zygote.log")
    yield z
    z.close()


def _env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"), **extra}


def test_children_report_exit_codes_and_write_their_own_logs(zygote: Zygote, tmp_path: Path) -> None:
    good = zygote.spawn(["validate", "-f", str(JOB)], _env(), tmp_path / "good.log", str(tmp_path))
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("apiVersion: sedna.io/v1alpha1\nkind: Dataset\nmetadata: {name: d}\nspec: {format: idx}\n")
    bad = zygote.spawn(["validate", "-f", str(bad_file)], _env(), tmp_path / "bad.log", str(tmp_path))
    assert good is not None and bad is not None
    assert good.pid != bad.pid and os.getpid() not in (good.pid, bad.pid)
    assert good.wait(60) == 0
    assert bad.wait(60) == 2
    assert "mnist-mistnet" in (tmp_path / "good.log").read_text()
    assert "error: " in (tmp_path / "bad.log").read_text() and "bad.yaml" in (tmp_path / "bad.log").read_text()


def test_a_child_gets_exactly_the_requested_env(zygote: Zygote, tmp_path: Path) -> None:
    """The worker's env replaces the launcher's: a contract variable set only in the launcher must not leak."""
    os.environ["JOB_NAME"] = "leaked-from-the-launcher"
    try:
        child = zygote.spawn(["worker", "aggregate"], _env(), tmp_path / "w.log", str(tmp_path))
    finally:
        del os.environ["JOB_NAME"]
    assert child is not None
    assert child.wait(60) == 2
    assert "JOB_NAME is not set" in (tmp_path / "w.log").read_text()


def test_a_child_runs_in_the_requested_folder(zygote: Zygote, tmp_path: Path) -> None:
    child = zygote.spawn(["data", "split", "--source", str(FMNIST), "--out", "rel-out", "--public", "0",
                          "--edges", "20", "--seed", "0"], _env(), tmp_path / "s.log", str(tmp_path))
    assert child is not None
    assert child.wait(120) == 0, (tmp_path / "s.log").read_text()
    assert (tmp_path / "rel-out" / "edge1").is_dir()


def test_signals_reach_the_child_and_its_exit_code_says_so(zygote: Zygote, tmp_path: Path) -> None:
    # A trainer dialing an aggregator that never comes keeps retrying: a long-lived child to kill.
    env = _env(JOB_NAME="probe", WORKER_NAME="edge1", AGG_IP="127.0.0.1", AGG_PORT="9", PARTICIPANTS_COUNT="1",
               aggregation_algorithm="fedavg", FEDMIST_TOKEN="t" * 32, TRAIN_DATASET_URL=str(FMNIST / "t10k"))
    child = zygote.spawn(["worker", "train"], env, tmp_path / "t.log", str(tmp_path))
    assert child is not None
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(1.5)
    child.send_signal(signal.SIGKILL)
    assert child.wait(30) == -signal.SIGKILL


def test_a_dead_zygote_makes_spawn_say_none(zygote: Zygote, tmp_path: Path) -> None:
    first = zygote.spawn(["validate", "-f", str(JOB)], _env(), tmp_path / "a.log", str(tmp_path))
    assert first is not None and first.wait(60) == 0
    zygote._proc.kill()  # the test owns this process: it started it through the fixture
    zygote._proc.wait()
    assert zygote.spawn(["validate", "-f", str(JOB)], _env(), tmp_path / "b.log", str(tmp_path)) is None


def test_a_worker_outliving_its_dead_zygote_still_reports_its_exit_code(zygote: Zygote, tmp_path: Path) -> None:
    """The zygote dies (the OOM killer, say) while a worker runs: the worker is re-parented, so nobody here can
    wait for it, yet the launcher still learns it exited 0 (from the code the worker left), not a made-up 1."""
    child = zygote.spawn(["data", "split", "--source", str(FMNIST), "--out", "out", "--public", "10000",
                          "--edges", "20000,20000", "--seed", "0"], _env(), tmp_path / "s.log", str(tmp_path))
    assert child is not None
    zygote._proc.kill()  # the test owns this process: it started it through the fixture
    zygote._proc.wait()
    assert child.poll() is None  # still splitting
    assert child.wait(120) == 0, (tmp_path / "s.log").read_text()
    assert (tmp_path / "out" / "edge2").is_dir()
