"""fedmist.worker.detect.aggregator's pure parts: the cut, the chunk size, where validation data comes from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedmist.worker.context import WorkerContext
from fedmist.worker.detect import aggregator as agg
from fedmist.worker.errors import ConfigurationError


def test_the_cut_is_an_index_and_defaults_to_4() -> None:
    from fedmist.spec.params import DEFAULT_CUT_LAYER

    # the default is filled where the params are parsed (spec/params.py), not by the runtime
    assert DEFAULT_CUT_LAYER["detect"] == 4 and agg._cut(6, 10) == 6 and agg._cut("7", 10) == 7
    with pytest.raises(ConfigurationError) as info:
        agg._cut("backbone", 10)
    assert str(info.value) == "cut_layer 'backbone': YOLO modules are named by index; use 1..9"


def test_chunks_follow_the_edges_batch_size() -> None:
    assert (agg._chunk(640), agg._chunk(320)) == (8, 32)


def _coco(root: Path, *splits: str) -> Path:
    for split in splits:
        (root / "images" / split).mkdir(parents=True)
    return root


def test_without_a_test_set_the_pretraining_sets_val_split_is_used_if_recorded(tmp_path: Path) -> None:
    weights = tmp_path / "pre.pth"
    assert agg._public_val_beside_pretraining(str(weights)) is None  # no metadata beside the weights
    meta = Path(f"{weights}.json")
    for content in ("not json", "[]", json.dumps({"imgsz": 320}), json.dumps({"source": str(tmp_path / "none")})):
        meta.write_text(content)
        assert agg._public_val_beside_pretraining(str(weights)) is None, content
    train_only = _coco(tmp_path / "train-only", "train")
    meta.write_text(json.dumps({"source": str(train_only)}))
    assert agg._public_val_beside_pretraining(str(weights)) is None  # never falls back to its train split
    public = _coco(tmp_path / "public", "train", "val")
    meta.write_text(json.dumps({"source": str(public)}))
    assert agg._public_val_beside_pretraining(str(weights)) == str(public)


def test_a_missing_validation_set_is_none_and_a_bad_one_a_configuration_error(tmp_path: Path) -> None:
    assert agg._validation_set(None, 64, 3) is None and agg._validation_set("", 64, 3) is None
    with pytest.raises(ConfigurationError) as info:
        agg._validation_set(str(tmp_path / "none"), 64, 3)
    assert str(info.value) == f"TEST_DATASET_URL: dataset folder not found: {tmp_path / 'none'}"


def test_saving_needs_a_model_url(tmp_path: Path) -> None:
    ctx = WorkerContext.from_env("aggregator", {"JOB_NAME": "j", "FEDMIST_STATE_DIR": str(tmp_path)})
    with pytest.raises(ConfigurationError) as info:
        agg._save(ctx, None, None, 4, 320, 1.0, True, {}, {}, [], {})  # type: ignore[arg-type]
    assert str(info.value) == "MODEL_URL is empty: the aggregationWorker's Model needs a url"
