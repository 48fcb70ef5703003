"""A MistNet trainer's own privacy settings are checked at worker start, before any data is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedmist.worker.context import WorkerContext
from fedmist.worker.detect.trainer import run_detect_trainer
from fedmist.worker.errors import ConfigurationError
from fedmist.worker.mistnet.trainer import run_mistnet_trainer


def _ctx(tmp_path: Path, **env: str) -> WorkerContext:
    return WorkerContext.from_env("trainer", {"JOB_NAME": "j", "WORKER_NAME": "edge1", "FEDMIST_STATE_DIR":
                                              str(tmp_path / "state"), "TRAIN_DATASET_URL": str(tmp_path / "none"),
                                              **env})


def test_a_mistnet_trainer_without_its_own_epsilon_is_refused(tmp_path) -> None:
    for run in (run_mistnet_trainer, run_detect_trainer):
        with pytest.raises(ConfigurationError, match="^epsilon: a MistNet trainer needs an epsilon of its own"):
            run(_ctx(tmp_path))
    assert not (tmp_path / "state").exists()  # refused before a seed was drawn


def test_detection_refuses_a_trainers_label_epsilon(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match=r"^label_epsilon is not supported for detection jobs"):
        run_detect_trainer(_ctx(tmp_path, epsilon="2", label_epsilon="1"))


def test_a_bad_privacy_budget_is_refused_at_start(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match=r"^privacy_budget: must be a positive number \(got 'lots'\)$"):
        run_mistnet_trainer(_ctx(tmp_path, epsilon="2", privacy_budget="lots"))
