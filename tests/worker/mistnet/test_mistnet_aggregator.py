"""fedmist.worker.mistnet.aggregator's own logic, without edges: start-up refusals (before any port opens), the
stores summary a checkpoint is bound to, the resume decision, the test set and the saved model's sidecar."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from fedmist.models.parts import build_job_model, split_parts
from fedmist.models.weights import load_weights, save_weights
from fedmist.spec.errors import ParamError
from fedmist.worker.checkpoint import CheckpointStore
from fedmist.worker.context import WorkerContext
from fedmist.worker.errors import ConfigurationError
from fedmist.worker.mistnet import aggregator as agg
from fedmist.worker.mistnet.feature_store import WorkerStore


def _ctx(tmp_path: Path, **env: str) -> WorkerContext:
    return WorkerContext.from_env("aggregator", {"JOB_NAME": "j", "FEDMIST_STATE_DIR": str(tmp_path / "state"),
                                                 "FEDMIST_BIND_HOST": "127.0.0.1", **env})


def _pretrained(tmp_path: Path) -> str:
    torch.manual_seed(0)
    return str(save_weights(build_job_model("lenet5", num_classes=10).state_dict(), tmp_path / "pre.pth"))


@pytest.mark.parametrize("env, message", [
    ({}, "MistNet needs pretrained weights: add spec.pretrainedModel (PRETRAINED_MODEL_URL is empty)"),
    ({"model": "nosuchnet", "PRETRAINED_MODEL_URL": "x.pth"},
     "model 'nosuchnet': unknown model 'nosuchnet': use one of ['lenet5'] or an import path "
     "'package.module:factory'"),
])
def test_an_aggregator_without_a_model_or_weights_is_refused_at_start(tmp_path, env, message) -> None:
    with pytest.raises(ConfigurationError) as info:
        agg.run_mistnet_aggregator(_ctx(tmp_path, **env))
    assert str(info.value) == message


def test_missing_weights_a_bad_cut_and_an_unset_epsilon_are_refused_in_that_order(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(agg, "_s3_ready", lambda ctx: pytest.fail("got past the start-up checks"))
    missing = tmp_path / "nope.pth"
    with pytest.raises(ConfigurationError) as info:
        agg.run_mistnet_aggregator(_ctx(tmp_path, PRETRAINED_MODEL_URL=str(missing)))
    assert str(info.value) == (f"pretrained model {missing}: weights file not found: {missing} "
                               "(refusing to fall back to random initialisation)")
    weights = _pretrained(tmp_path)
    with pytest.raises(ConfigurationError) as info:
        agg.run_mistnet_aggregator(_ctx(tmp_path, PRETRAINED_MODEL_URL=weights, cut_layer="12"))
    assert str(info.value) == ("cut_layer 12 is out of range for a model with 12 modules: use 1..11 (index of the "
                               "first cloud module) so that both parts are non-empty")
    # an unset epsilon never reaches the runtime: the worker's params refuse it where they are parsed, once
    with pytest.raises(ParamError) as info:
        _ctx(tmp_path, aggregation_algorithm="mistnet", PRETRAINED_MODEL_URL=weights)
    assert str(info.value) == ("<env>: epsilon: required for aggregation_algorithm=mistnet; "
                               "use epsilon: inf to disable noise explicitly")
    assert not (tmp_path / "state").exists()  # nothing stored before the job's settings were sound


def _store(root: Path, name: str, rows: int, complete: bool = True) -> str:
    data = bytes(range(3 * rows))
    store = WorkerStore.open(root, name, num_samples=rows, feature_bytes=2, label_bytes=1, feature_shape=[16],
                             privacy={"epsilon": "1.0", "label_epsilon": ""})
    store.write(0, data)
    digest = hashlib.sha256(data).hexdigest()
    if complete:
        store.finish(digest)
    return digest


def test_the_stores_summary_names_each_stored_edge_and_skips_the_others(tmp_path) -> None:
    digest = _store(tmp_path, "edge1", 2)
    summary = agg._stores_summary(tmp_path, ["edge1", "edge9"])
    assert summary == {"edge1": {"received": 2, "num_samples": 2, "record_bytes": 3, "sha256": digest,
                                 "epsilon": "1.0", "label_epsilon": ""}}


def test_a_checkpoint_resumes_only_over_the_same_stores(tmp_path) -> None:
    checkpoints = CheckpointStore(tmp_path, "spec", "mistnet-cloud")
    assert agg._resume_point(checkpoints, {}) is None  # no checkpoint yet
    stores = {"edge1": {"received": 2, "sha256": "ab"}}
    checkpoints.save(3, {"w": np.arange(4, dtype=np.float32)}, {"stores": stores, "report_history": [{"epoch": 3}]})
    resumed = agg._resume_point(checkpoints, stores)
    assert resumed is not None and resumed.epoch == 3 and resumed.meta["report_history"] == [{"epoch": 3}]
    np.testing.assert_array_equal(resumed.arrays["w"], np.arange(4, dtype=np.float32))
    assert agg._resume_point(checkpoints, {"edge1": {"received": 2, "sha256": "cd"}}) is None


def test_the_test_set_is_optional_and_a_bad_one_is_a_configuration_error(tmp_path) -> None:
    assert agg._load_test_set("") is None and agg._load_test_set(None) is None
    with pytest.raises(ConfigurationError) as info:
        agg._load_test_set(str(tmp_path / "none"))
    none = tmp_path / "none"
    assert str(info.value) == f"TEST_DATASET_URL: {none}: expected exactly one images file with this prefix, found none"


def test_the_expected_feature_shape_is_the_edge_output_on_test_shaped_inputs() -> None:
    edge = split_parts(build_job_model("lenet5", num_classes=10), 3, "model lenet5").edge
    assert agg._expected_shape(edge, None) is None
    # IDX images (N, 28, 28) gain their channel axis, as in training
    assert agg._expected_shape(edge, (np.zeros((4, 28, 28), np.uint8), np.zeros(4))) == (6, 14, 14)


def test_ws_needs_no_s3_bucket(tmp_path) -> None:
    assert agg._s3_ready(_ctx(tmp_path)) is None


def test_the_edges_status_is_a_copy_of_each_edges_fields() -> None:
    edge = SimpleNamespace(received=3, complete=False)
    status = agg._edges_status(SimpleNamespace(edges={"edge1": edge}))  # type: ignore[arg-type]
    assert status == {"edge1": {"received": 3, "complete": False}}
    status["edge1"]["received"] = 9
    assert edge.received == 3


def test_the_saved_model_carries_a_json_sidecar_with_each_edges_epsilon(tmp_path) -> None:
    state = {"w": torch.ones(2)}
    args: tuple[Any, ...] = (state, 3, 2.0, True, {"accuracy": 0.5}, {"floor": 2.0}, [{"epoch": 1}],
                             {"edge1": (1.0, None), "edge2": (math.inf, 0.5)})
    with pytest.raises(ConfigurationError) as info:
        agg._save_model(_ctx(tmp_path), *args)
    assert str(info.value) == "MODEL_URL is empty: the aggregationWorker's Model needs a url"
    path = agg._save_model(_ctx(tmp_path, MODEL_URL=str(tmp_path / "out" / "m.pth")), *args)
    assert path == tmp_path / "out" / "m.pth"
    assert torch.equal(load_weights(path)["w"], torch.ones(2))
    sidecar = json.loads(Path(f"{path}.json").read_text())
    sidecar.pop("saved")
    assert sidecar == {"job": "j", "architecture": "lenet5", "algorithm": "mistnet", "cut_layer": 3, "epsilon": 2.0,
                       "edge_epsilons": {"edge1": {"epsilon": "1.0", "label_epsilon": ""},
                                         "edge2": {"epsilon": "inf", "label_epsilon": "0.5"}},
                       "debias": True, "metrics": {"accuracy": 0.5}, "privacy": {"floor": 2.0},
                       "history": [{"epoch": 1}]}
