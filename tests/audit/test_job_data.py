"""fedmist.audit.job_data: which jobs can be audited, and where the attacker's public split is found."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fedmist.audit.job_data import _public_path, load_audit_data
from fedmist.data.idx import write_idx
from fedmist.models.registry import build_model
from fedmist.models.weights import save_weights
from fedmist.spec.params import JobParams


def _job(tmp_path: Path, algorithm: str = "mistnet", pretrained: str = "", test: str = "", first: str = ""):
    params = JobParams(role="aggregator", aggregation_algorithm=algorithm, test_dataset_url=test or None,
                       epsilon=2.0)
    trainers = [SimpleNamespace(dataset_url=first, dataset_format="idx")]
    return SimpleNamespace(name="j", aggregator="agg", trainers=trainers, pretrained_model_url=pretrained,
                           params_for=lambda worker: params)


@pytest.mark.parametrize("fields, message", [
    ({"algorithm": "fedavg"}, "fedmist audit attacks MistNet uploads; job j uses fedavg"),
    ({}, "job j has no pretrainedModel: the audit needs the edge's weights"),
    ({"pretrained": "/w.pth"}, "job j sets no TEST_DATASET_URL: the audit needs it for the job's accuracy"),
])
def test_jobs_that_cannot_be_audited_are_refused_in_one_line(tmp_path, fields, message) -> None:
    with pytest.raises(ValueError) as info:
        load_audit_data(_job(tmp_path, **fields))  # type: ignore[arg-type]
    assert str(info.value) == message


def test_the_public_split_is_named_or_found_beside_the_edge_data(tmp_path) -> None:
    assert _public_path(_job(tmp_path), "/given") == Path("/given")  # type: ignore[arg-type]
    with pytest.raises(ValueError) as info:
        _public_path(_job(tmp_path), None)  # type: ignore[arg-type]
    assert str(info.value) == "the job's first training worker has no dataset url; pass --public DIR"
    edge = tmp_path / "splits" / "edge1"
    with pytest.raises(ValueError) as info:
        _public_path(_job(tmp_path, first=str(edge)), None)  # type: ignore[arg-type]
    assert str(info.value) == f"no public split at {tmp_path / 'splits' / 'public'} (expected beside the edge data); " \
                              "pass --public DIR"
    (tmp_path / "splits" / "public").mkdir(parents=True)
    assert _public_path(_job(tmp_path, first=str(edge)), None) == tmp_path / "splits" / "public"  # type: ignore


def test_a_sound_job_loads_its_model_split_and_all_datasets(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for name, n in (("edge1", 3), ("public", 4), ("test", 2)):
        folder = tmp_path / "splits" / name
        folder.mkdir(parents=True)
        write_idx(folder / "images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / "labels-idx1-ubyte", np.arange(n, dtype=np.uint8))
    torch.manual_seed(0)
    weights = save_weights(build_model("lenet5").state_dict(), tmp_path / "pre.pth")
    job = _job(tmp_path, pretrained=str(weights), test=str(tmp_path / "splits" / "test"),
               first=str(tmp_path / "splits" / "edge1"))
    data = load_audit_data(job)  # type: ignore[arg-type]
    assert (data.model_name, data.cut, data.job_epsilon, data.epochs, data.batch_size, data.debias) == \
        ("lenet5", 3, 2.0, 10, 64, True)
    assert (len(data.edge_images), len(data.aux_images), len(data.test_images)) == (3, 4, 2)
    assert data.edge_labels.tolist() == [0, 1, 2] and data.edge_labels.dtype == np.int64
    assert len(data.edge) == 3 and not data.edge.training
