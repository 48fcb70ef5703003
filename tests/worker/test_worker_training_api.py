"""The Trainer interface: the default is exactly the built-in loop; user classes are checked; extraction and
label checks accept a user loader's tensors of any shape."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from fedmist.models.extract import extract_bits, feature_shape_of
from fedmist.models.local_train import LocalConfig, train_local
from fedmist.privacy.channel import unpack_bits
from fedmist.training import SGDTrainer, Trainer, build_trainer, check_metrics, resolve_trainer
from fedmist.worker.errors import ConfigurationError, check_labels


class Options(SGDTrainer):
    pass


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3))


def test_sgd_trainer_is_the_built_in_loop() -> None:
    x, y = torch.rand(40, 3, 2, 2), torch.arange(40) % 3
    config = LocalConfig(epochs=2, batch_size=8, learning_rate=0.1, seed=5)
    a, b = _model(), _model()
    result = SGDTrainer().train(a, x, y, config, threading.Event())
    reference = train_local(b, x, y, config)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert result.metrics == reference.metrics and result.num_samples == 40
    assert set(SGDTrainer().evaluate(a, x, y)) == {"accuracy", "loss"}


def test_resolve_and_build_trainers() -> None:
    assert resolve_trainer(None) is SGDTrainer and resolve_trainer("SGD") is SGDTrainer
    trainer = build_trainer(f"{__name__}:Options", {"label_smoothing": "0.2"})
    assert type(trainer) is Options and trainer.options == {"label_smoothing": "0.2"}
    with pytest.raises(ValueError, match=r"trainer 'adam': use one of sgd or 'package.module:Class'"):
        resolve_trainer("adam")
    with pytest.raises(ValueError, match=r"must be a subclass of fedmist.training.Trainer, got a function"):
        resolve_trainer(f"{__name__}:_model")
    with pytest.raises(ValueError, match=r"is abstract: implement evaluate, train"):
        resolve_trainer("fedmist.training:Trainer")


def test_check_metrics() -> None:
    assert check_metrics({"accuracy": 1, "loss": 0.5}, "t") == {"accuracy": 1.0, "loss": 0.5}
    with pytest.raises(ValueError, match=r"^t returned list, expected a dict"):
        check_metrics([0.5], "t")
    with pytest.raises(ValueError, match=r"^t returned metric 'accuracy' = 'high'"):
        check_metrics({"accuracy": "high"}, "t")
    with pytest.raises(ValueError, match=r"^t returned accuracy nan, which is not finite"):
        check_metrics({"accuracy": float("nan")}, "t")


def test_extraction_takes_user_tensors_of_any_shape() -> None:
    edge = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    x = torch.rand(5, 3, 32, 32) - 0.5
    assert feature_shape_of(edge, probe=torch.zeros(2, 3, 32, 32)) == (2, 16, 16)
    packed, shape = extract_bits(edge, x, float("inf"), batch_size=2)
    assert shape == (2, 16, 16) and packed.shape == (5, 2 * 16 * 16 // 8)
    with torch.no_grad():
        bits = (edge(x) > 0).flatten(1).numpy()
    assert np.array_equal(unpack_bits(packed, 512).astype(bool), bits)


def test_labels_outside_the_models_classes_are_a_configuration_error() -> None:
    check_labels(np.array([0, 9]), 10, "d")
    with pytest.raises(ConfigurationError, match=r"^dataset d: labels range over 0..12, but the job's model has 10 "
                                                 r"classes; set num_classes"):
        check_labels(np.array([0, 12]), 10, "d")


def test_user_trainer_subclass_needs_only_two_methods() -> None:
    class Tiny(Trainer):
        def train(self, model, inputs, labels, config, cancel):
            return SGDTrainer().train(model, inputs, labels, config, cancel)

        def evaluate(self, model, inputs, labels):
            return {"accuracy": 0.5}

    assert Tiny().evaluate_global(_model(), torch.rand(2, 12), torch.zeros(2, dtype=torch.long)) == {"accuracy": 0.5}
