"""fedmist.launch.zygote's pure parts: which argv it accepts, how it answers bad requests, the exit files.
(Real forks are proven in test_launch_zygote.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fedmist.launch import zygote


def test_only_worker_argvs_are_accepted() -> None:
    assert zygote.worker_argv(["worker", "aggregate"]) == ("aggregator", [])
    assert zygote.worker_argv(["worker", "train", "--a", "b"]) == ("trainer", ["--a", "b"])
    for bad in (["run", "-f", "x"], ["worker"], ["worker", "serve"], ("worker", "train"), ["worker", "train", 3]):
        with pytest.raises(ValueError) as info:
            zygote.worker_argv(bad)
        assert str(info.value) == ("the zygote starts workers only: argv must be ['worker', 'aggregate'|'train', "
                                   f"...], got {str(bad)[:200]}")


@pytest.fixture
def written(monkeypatch) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    monkeypatch.setattr(zygote, "_write", lines.append)
    return lines


@pytest.mark.parametrize("line, error", [
    (b"{not json", None),
    (b"[1, 2]", "a request needs argv, env, log and cwd"),
    (b'{"argv": ["worker", "train"], "env": {}, "log": "x"}', "a request needs cwd"),
    (b'{"argv": ["rm", "-rf"], "env": {}, "log": "x", "cwd": "/"}',
     "the zygote starts workers only: argv must be ['worker', 'aggregate'|'train', ...], got ['rm', '-rf']"),
])
def test_bad_requests_get_an_error_line_and_no_fork(monkeypatch, written, line, error) -> None:
    monkeypatch.setattr(zygote.os, "fork", lambda: pytest.fail("forked on a bad request"))
    zygote._spawn(line)
    assert len(written) == 1 and list(written[0]) == ["error"]
    if error is not None:
        assert written[0]["error"] == error


def test_a_good_request_forks_and_reports_the_child(monkeypatch, written) -> None:
    monkeypatch.setattr(zygote.os, "fork", lambda: 4242)  # the parent's side of the fork
    zygote._spawn(json.dumps({"argv": ["worker", "train"], "env": {}, "log": "l", "cwd": "/"}).encode())
    assert written == [{"spawned": 4242}]


def test_the_exit_file_holds_the_code_and_a_missing_folder_is_ignored(tmp_path: Path) -> None:
    zygote._record_exit(str(tmp_path), 3)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.isdigit() and files[0].read_text() == "3"
    zygote._record_exit(str(tmp_path / "gone"), 1)  # launcher removed it: nothing to do, no error
    zygote._record_exit(None, 1)
    zygote._record_exit("", 1)
    assert len(list(tmp_path.iterdir())) == 1


def test_exit_codes_are_reported_as_subprocess_does() -> None:
    assert zygote._exit_code(3 << 8) == 3
    assert zygote._exit_code(9) == -9  # killed by SIGKILL
    assert set(zygote.ROLES.items()) == {("aggregate", "aggregator"), ("train", "trainer")}
