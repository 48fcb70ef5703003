"""The zygote forks real worker processes: each gets its own env, folder, log and exit code, and a dead zygote
makes the launcher fall back to starting interpreters (never a failed job). It starts workers only, through
the worker entrypoint (never the CLI)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from fedmist.launch.spawn import Zygote

REPO = Path(__file__).resolve().parents[2]
JOB = REPO / "examples" / "mnist-mistnet" / "job.yaml"
FMNIST = Path("/usr/share/datasets/fashion-mnist")
HERE = Path(__file__).resolve().parent  # holds zygote_probe.py


@pytest.fixture()
def zygote(tmp_path: Path):
    z = Zygote(tmp_path / "zygote.log")
    yield z
    z.close()


def _env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"), **extra}


def _probe_env(exit_code: int = 0, sleep_s: float = 0.0) -> dict[str, str]:
    """An aggregator whose model factory is :func:`zygote_probe.probe`: it exits ``exit_code`` after ``sleep_s``."""
    return _env(JOB_NAME="probe", WORKER_NAME="cloud", PARTICIPANTS_COUNT="1", aggregation_algorithm="fedavg",
                model="zygote_probe:probe", FEDMIST_TOKEN="t" * 32, PYTHONPATH=str(HERE),
                PROBE_EXIT=str(exit_code), PROBE_SLEEP=str(sleep_s))


def test_children_report_exit_codes_and_write_their_own_logs(zygote: Zygote, tmp_path: Path) -> None:
    (tmp_path / "g").mkdir()
    (tmp_path / "o").mkdir()
    good = zygote.spawn(["worker", "aggregate", "--note"], _probe_env(0), tmp_path / "good.log", str(tmp_path / "g"))
    odd = zygote.spawn(["worker", "aggregate"], _probe_env(3), tmp_path / "odd.log", str(tmp_path / "o"))
    bad = zygote.spawn(["worker", "train"], _env(), tmp_path / "bad.log", str(tmp_path))
    assert good is not None and odd is not None and bad is not None
    assert len({good.pid, odd.pid, bad.pid, os.getpid()}) == 4
    assert good.wait(60) == 0
    assert odd.wait(60) == 3
    assert bad.wait(60) == 2
    assert "container args ['--note'] recorded" in (tmp_path / "good.log").read_text()
    assert "bad worker configuration" in (tmp_path / "bad.log").read_text()
    assert "--note" not in (tmp_path / "odd.log").read_text() + (tmp_path / "bad.log").read_text()


def test_the_zygote_starts_workers_only_and_never_loads_the_cli(zygote: Zygote, tmp_path: Path) -> None:
    """Anything but ``worker aggregate|train`` is refused before a fork (no process, no log); a worker runs
    through its entrypoint, so the CLI is never imported into it."""
    assert zygote.spawn(["validate", "-f", str(JOB)], _env(), tmp_path / "v.log", str(tmp_path)) is None
    assert zygote.spawn(["worker", "serve"], _env(), tmp_path / "s.log", str(tmp_path)) is None
    assert not (tmp_path / "v.log").exists() and not (tmp_path / "s.log").exists()
    child = zygote.spawn(["worker", "aggregate"], _probe_env(0), tmp_path / "w.log", str(tmp_path))
    assert child is not None and child.wait(60) == 0, (tmp_path / "w.log").read_text()
    assert json.loads((tmp_path / "probe.json").read_text())["cli_loaded"] is False


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
    folder = tmp_path / "work"
    folder.mkdir()
    child = zygote.spawn(["worker", "aggregate"], _probe_env(0), tmp_path / "s.log", str(folder))
    assert child is not None
    assert child.wait(60) == 0, (tmp_path / "s.log").read_text()
    assert json.loads((folder / "probe.json").read_text())["cwd"] == str(folder)  # written as a relative path


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
    first = zygote.spawn(["worker", "aggregate"], _probe_env(0), tmp_path / "a.log", str(tmp_path))
    assert first is not None and first.wait(60) == 0
    zygote._proc.kill()  # the test owns this process: it started it through the fixture
    zygote._proc.wait()
    assert zygote.spawn(["worker", "aggregate"], _probe_env(0), tmp_path / "b.log", str(tmp_path)) is None


def test_a_worker_outliving_its_dead_zygote_still_reports_its_exit_code(zygote: Zygote, tmp_path: Path) -> None:
    """The zygote dies (the OOM killer, say) while a worker runs: the worker is re-parented, so nobody here can
    wait for it, yet the launcher still learns it exited 0 (from the code the worker left), not a made-up 1."""
    child = zygote.spawn(["worker", "aggregate"], _probe_env(0, sleep_s=4.0), tmp_path / "s.log", str(tmp_path))
    assert child is not None
    zygote._proc.kill()  # the test owns this process: it started it through the fixture
    zygote._proc.wait()
    assert child.poll() is None  # still running
    assert child.wait(120) == 0, (tmp_path / "s.log").read_text()
    assert (tmp_path / "probe.json").is_file()
