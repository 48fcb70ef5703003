"""Each edge's records are debiased with that edge's own flip probability (issue 17), on one shared gather."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch
from torch import nn

from fedmist.models.cloud_train import InMemoryPackedSource, eval_input_values, input_values, train_cloud
from fedmist.worker.mistnet.feature_store import WorkerStore, open_complete_stores


class _Recorder(nn.Module):
    """A linear cloud that keeps every training input it is fed, to see what the decoder produced."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 2)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.fc(x)


def test_each_sample_is_debiased_with_its_own_edges_epsilon():
    packed = np.array([[0b1010_0101, 0xFF], [0b1010_0101, 0xFF], [0x00, 0x0F]], dtype=np.uint8)
    origins = np.array([0, 1, 2])
    source = InMemoryPackedSource(packed, np.array([0, 1, 0]), (16,), origins=origins)
    cloud = _Recorder()
    train_cloud(cloud, source, epochs=1, batch_size=3, epsilon=[1.0, 4.0, math.inf], seed=0)
    x = cloud.seen[0]
    bits = np.unpackbits(packed, axis=1, bitorder="little").astype(bool)
    for row, eps in enumerate((1.0, 4.0, math.inf)):
        zero, one = input_values(eps, True, train=True)
        expected = np.where(bits[row], one, zero).astype(np.float32)
        assert np.array_equal(x[row].numpy(), expected), (row, eps)
    # epsilon 1: (z - q) / (p - q) with p = e / (1 + e)
    p = math.e / (1 + math.e)
    assert float(x[0, 0]) == pytest.approx((1 - (1 - p)) / (2 * p - 1), rel=1e-6)
    assert float(x[0, 1]) == pytest.approx(-(1 - p) / (2 * p - 1), rel=1e-6)
    assert float(x[2, 0]) == 0.0 and float(x[2, 12]) == 0.0 and float(x[2, 8]) == 1.0  # inf: clean bits


def test_several_epsilons_need_a_source_that_names_origins():
    class _NoOrigins:
        feature_shape = (16,)

        def __len__(self) -> int:
            return 2

        def batch(self, indices):
            return np.zeros((len(indices), 2), np.uint8), np.zeros(len(indices), np.int64)

    with pytest.raises(ValueError, match="does not name each sample's origin"):
        train_cloud(_Recorder(), _NoOrigins(), epochs=1, epsilon=[1.0, 2.0])


def test_eval_inputs_follow_the_training_mixture_without_debiasing():
    p = 1 / (1 + math.exp(-1.0))
    zero, one = eval_input_values([1.0, math.inf], [3, 1], debias=False)
    assert zero == pytest.approx(3 * (1 - p) / 4) and one == pytest.approx((3 * p + 1) / 4)
    assert eval_input_values([1.0, 4.0], [5, 7], debias=True) == (0.0, 1.0)  # every edge's inputs: expectation b


def test_store_source_names_each_samples_edge_and_its_epsilon(tmp_path):
    for name, n, eps in (("edge1", 3, "1.0"), ("edge2", 5, "4.0")):
        rows = np.full((n, 3), 7, np.uint8)
        store = WorkerStore.open(tmp_path, name, num_samples=n, feature_bytes=2, label_bytes=1, feature_shape=[16],
                                 privacy={"epsilon": eps, "label_epsilon": ""})
        store.write(0, rows.tobytes())
        store.finish(hashlib.sha256(rows.tobytes()).hexdigest())
    source = open_complete_stores(tmp_path)
    assert source.workers == ("edge1", "edge2") and source.epsilons == ("1.0", "4.0") and source.counts == (3, 5)
    assert source.origins(np.array([0, 2, 3, 7])).tolist() == [0, 0, 1, 1]
