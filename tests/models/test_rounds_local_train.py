"""The round engine's pieces: local SGD (+ FedProx's proximal term), weights codec, config precedence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedmist.models.local_train import (
    LocalConfig,
    evaluate,
    format_for_url,
    load_numpy_state,
    state_to_numpy,
    train_local,
    validation_split,
)
from fedmist.strategy import proximal_gradient
from fedmist.wire.arrays import decode_weights, encode_weights, raw_parameter_bytes
from fedmist.wire.envelope import ProtocolError


def _toy(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x = torch.randn(64, 1, 2, 2)
    y = (x.flatten(1).sum(1) > 0).long() + (x.flatten(1)[:, 0] > 1).long()
    return model, x, y


def test_one_step_matches_sgd_with_the_proximal_gradient() -> None:
    """One full-batch step from the round's start: w1 = w0 - lr * grad (the proximal drift is 0 at w0);
    the second step adds mu * (w1 - w0), checked against the numpy reference."""
    model, x, y = _toy()
    start = state_to_numpy(model)
    cfg = LocalConfig(epochs=2, batch_size=64, learning_rate=0.5, momentum=0.0, mu=0.7)
    ref, _, _ = _toy()
    load_numpy_state(ref, start)
    for _ in range(2):
        ref.zero_grad()
        nn.functional.cross_entropy(ref(x), y).backward()
        local = state_to_numpy(ref)
        prox = proximal_gradient(local, start, 0.7)
        with torch.no_grad():
            for name, p in ref.named_parameters():
                p -= 0.5 * (p.grad + torch.from_numpy(prox[name]))
    train_local(model, x, y, cfg)
    for name, value in state_to_numpy(model).items():
        np.testing.assert_allclose(value, state_to_numpy(ref)[name], rtol=1e-5, atol=1e-6)


def test_local_training_learns_and_mu_pulls_toward_the_global_model() -> None:
    model, x, y = _toy()
    start = state_to_numpy(model)
    before = evaluate(model, x, y)
    result = train_local(model, x, y, LocalConfig(epochs=20, batch_size=16, learning_rate=0.1))
    assert result.num_samples == 64 and result.compute_s > 0 and not result.cancelled
    assert evaluate(model, x, y)["loss"] < before["loss"] - 0.2
    drift_free = sum(float(np.square(v - start[k]).sum()) for k, v in state_to_numpy(model).items())
    prox, _, _ = _toy()
    train_local(prox, x, y, LocalConfig(epochs=20, batch_size=16, learning_rate=0.1, mu=5.0))
    drift_prox = sum(float(np.square(v - start[k]).sum()) for k, v in state_to_numpy(prox).items())
    assert drift_prox < 0.5 * drift_free


def test_cancel_stops_training_between_batches() -> None:
    import threading

    model, x, y = _toy()
    cancel = threading.Event()
    cancel.set()
    assert train_local(model, x, y, LocalConfig(), cancel=cancel).cancelled


def test_weights_codec_round_trips_as_zero_copy_views_and_rejects_bad_payloads() -> None:
    weights = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array([7], np.int64)}
    buffer = bytearray(encode_weights(weights))
    decoded = decode_weights(buffer)
    assert decoded["a"].tolist() == weights["a"].tolist() and decoded["n"].tolist() == [7]
    assert np.shares_memory(decoded["a"], np.frombuffer(buffer, np.uint8))  # a view, not a copy
    assert not decoded["a"].flags.writeable
    assert raw_parameter_bytes(weights) == 24
    with pytest.raises(ProtocolError, match="'x' holds non-finite"):
        decode_weights(encode_weights({"x": np.array([np.inf], np.float32)}))
    with pytest.raises(ProtocolError, match="too short"):
        decode_weights(b"123")
    bad = bytearray(buffer)
    bad[0:8] = (10**9).to_bytes(8, "little")
    with pytest.raises(ProtocolError, match="header length"):
        decode_weights(bad)
    with pytest.raises(ProtocolError, match="outside"):
        decode_weights(buffer[:-4])


def test_load_numpy_state_names_the_mismatch() -> None:
    model, _, _ = _toy()
    state = state_to_numpy(model)
    with pytest.raises(ValueError, match="missing"):
        load_numpy_state(model, {"1.weight": state["1.weight"]})
    with pytest.raises(ValueError, match="1.bias: shape"):
        load_numpy_state(model, {**state, "1.bias": np.zeros(5, np.float32)})


def test_validation_split_and_test_set_format() -> None:
    train, val = validation_split(100, 0.1, seed=3)
    assert len(val) == 10 and len(train) == 90 and not set(train) & set(val)
    assert validation_split(5, 0.0, 0)[1].size == 0
    assert [format_for_url(u) for u in ("/d/test/index.txt", "/d/t.CSV", "/d/test")] == ["txt", "csv", "idx"]


@pytest.mark.parametrize("name", ["fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedmedian",
                                  "trimmedmean", "krum", "multikrum"])
def test_every_strategy_aggregates_the_read_only_views_the_engine_hands_it(name: str) -> None:
    """The engine passes zero-copy, read-only views of the wire buffers; no strategy may write into them."""
    from fedmist.strategy import FitResult, build_strategy

    start = decode_weights(encode_weights({"w": np.zeros(3, np.float32), "n": np.array([0], np.int64)}))
    strategy = build_strategy(name, {"min_clients": "1"})
    strategy.begin_round(1, start)
    for i, value in enumerate((1.0, 2.0, 4.0, 3.0, 2.5)):
        update = decode_weights(encode_weights({"w": np.full(3, value, np.float32), "n": np.array([i], np.int64)}))
        strategy.accumulate(FitResult(f"edge{i}", update, num_samples=10 + i))
    out = strategy.finish_round()
    assert out["w"].shape == (3,) and np.isfinite(out["w"]).all() and out["w"].dtype == np.float32


def test_weights_encoder_writes_standard_safetensors_and_consumes_its_input() -> None:
    from safetensors.numpy import load

    weights = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "n": np.array([7], np.int64),
               "h": np.ones(5, np.float16), "mask": np.array([True, False]), "empty": np.zeros((0, 2), np.float32)}
    owned = dict(weights)
    buffer = encode_weights(owned, consume=True)
    assert owned == {}  # freed entry by entry while encoding
    assert isinstance(buffer, bytearray) and int.from_bytes(buffer[:8], "little") % 8 == 0
    for decoded in (load(bytes(buffer)), decode_weights(buffer)):  # the reference reader and ours agree
        assert set(decoded) == set(weights)
        for key, value in weights.items():
            assert decoded[key].dtype == value.dtype and np.array_equal(decoded[key], value), key


def test_aggregator_model_shares_the_global_buffer() -> None:
    from fedmist.models.lenet import lenet5
    from fedmist.models.weights import share_numpy_state

    model = lenet5(num_classes=10)
    buffer = encode_weights({k: v.detach().numpy() for k, v in model.state_dict().items()})
    share_numpy_state(model, decode_weights(buffer, writable=True))
    first = next(iter(model.parameters()))
    views = decode_weights(buffer)
    name = next(iter(model.state_dict()))
    assert np.shares_memory(first.detach().numpy(), views[name])  # no second copy of the model
    with pytest.raises(ValueError, match="missing"):
        share_numpy_state(model, {})
