"""Cloud training on packed bits: consistency of train/test inputs and a real Fashion-MNIST outcome."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fedmist.data.idx import load_idx_dataset
from fedmist.models.cloud_train import InMemoryPackedSource, evaluate_cloud, input_values, train_cloud
from fedmist.models.extract import channel_features, extract_bits
from fedmist.models.pretrain import pretrain
from fedmist.models.registry import build_model
from fedmist.models.split import split_model
from fedmist.privacy.channel import keep_probability

FMNIST = Path("/usr/share/datasets/fashion-mnist")
THRESHOLD = 0.65  # 5k edge images, 2 epochs, eps inf reach ~0.73; a broken channel stays near 0.1


def test_input_values_give_train_and_test_the_same_expectation() -> None:
    p = keep_probability(1.0)
    q = 1 - p
    for debias in (True, False):
        zero_t, one_t = input_values(1.0, debias, train=True)
        zero_e, one_e = input_values(1.0, debias, train=False)
        # a clean bit b arrives as 1 w.p. p (b=1) or q (b=0): E[train input | b] must equal the test input
        assert q * one_t + p * zero_t == pytest.approx(zero_e)
        assert p * one_t + q * zero_t == pytest.approx(one_e)
    assert input_values(float("inf"), True, train=True) == (0.0, 1.0)


def test_source_validates_shapes() -> None:
    with pytest.raises(ValueError, match=r"uint8 \(N, 147\)"):
        InMemoryPackedSource(np.zeros((3, 146), np.uint8), np.zeros(3), (6, 14, 14))
    with pytest.raises(ValueError, match="3 feature rows but 2 labels"):
        InMemoryPackedSource(np.zeros((3, 147), np.uint8), np.zeros(2), (6, 14, 14))


@pytest.fixture(scope="module")
def setup() -> dict[str, object]:
    """Pretrain briefly on 3k public images; extract 5k edge images and 2k test images."""
    if not FMNIST.is_dir():
        pytest.fail(f"Fashion-MNIST not installed at {FMNIST} (apt-get install dataset-fashion-mnist)")
    images, labels = load_idx_dataset(FMNIST / "train")
    test_x, test_y = load_idx_dataset(FMNIST / "t10k")
    # plain and short, so the cloud part still has most to learn from the edge bits
    sd = pretrain(images[:3000], labels[:3000], epochs=3, threads=torch.get_num_threads())
    model = build_model("lenet5")
    model.load_state_dict(sd)
    edge, _ = split_model(model, 3)
    packed, shape = extract_bits(edge, images[10_000:15_000], float("inf"), seed=0)
    return {"model": model, "packed": packed, "shape": shape, "labels": labels[10_000:15_000],
            "test": channel_features(edge, test_x[:2000]), "test_y": test_y[:2000]}


def _train_and_eval(
    setup: dict[str, object], packed: np.ndarray, labels: np.ndarray, test_packed: np.ndarray | None = None
) -> tuple[dict, dict]:
    _, cloud = split_model(setup["model"], 3)  # type: ignore[arg-type]
    source = InMemoryPackedSource(packed, labels, setup["shape"])  # type: ignore[arg-type]
    seen: list[int] = []
    result = train_cloud(cloud, source, epochs=2, epsilon=float("inf"), seed=0, on_epoch=lambda e, s: seen.append(e))
    assert seen == [1, 2]
    test_packed = setup["test"] if test_packed is None else test_packed
    shape = setup["shape"]
    test = evaluate_cloud(cloud, test_packed, setup["test_y"], shape, float("inf"), True)  # type: ignore[arg-type]
    return result, test


def test_real_data_training_reaches_threshold(setup: dict[str, object]) -> None:
    result, test = _train_and_eval(setup, setup["packed"], setup["labels"])  # type: ignore[arg-type]
    history = result["history"]
    assert len(history) == 2 and set(history[0]) >= {"loss", "accuracy", "seconds"}
    assert history[1]["loss"] < history[0]["loss"]
    print(f"real-data test accuracy {test['accuracy']:.4f}")
    assert test["accuracy"] > THRESHOLD, test


@pytest.mark.parametrize("broken", ["all_zero_bits", "shuffled_labels"])
def test_broken_channel_misses_threshold(setup: dict[str, object], broken: str) -> None:
    packed, labels, test = setup["packed"], setup["labels"], setup["test"]
    cases = {  # a dead channel delivers zeros for training and test alike
        "all_zero_bits": lambda: (np.zeros_like(packed), labels, np.zeros_like(test)),
        "shuffled_labels": lambda: (packed, np.random.default_rng(0).permutation(labels), test),
    }
    _, test = _train_and_eval(setup, *cases[broken]())
    print(f"{broken} test accuracy {test['accuracy']:.4f}")
    assert test["accuracy"] < THRESHOLD - 0.3, test
