"""Updates folded chunk by chunk as they arrive, through the real RoundServer over real websockets on 127.0.0.1.

The trainers send tiny chunks (7 or 16 bytes) so the header spans many chunks and values straddle chunk edges.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from fedmist.strategy import FedAvg, FedMedian, FitResult, Strategy
from fedmist.transport import carrier, ws
from fedmist.transport.payload import recv_payload, send_payload
from fedmist.transport.security import Security
from fedmist.wire import messages as msg
from fedmist.wire.arrays import encode_weights
from fedmist.wire.envelope import Envelope
from fedmist.worker.rounds.aggregator import close_round
from fedmist.worker.rounds.server import OpenRound, RoundServer

JOB = "s"
# encode_weights orders same-width tensors by name: "b" then "w", so w's last value is in the payload's last chunk
GLOBAL = {"b": np.zeros(2, np.float32), "w": np.zeros(6, np.float32)}


async def _trainer(name: str, url: str) -> ws.Channel:
    channel = await ws.connect(url, security=Security(token="tok", job=JOB, worker=name))
    await channel.send(Envelope(type=msg.HELLO, job=JOB, worker=name, meta={"role": "trainer", "num_samples": 1000}))
    return channel


async def _reply(channel, name: str, weights: dict[str, np.ndarray], samples: int, chunk: int = 7) -> None:
    envelope, body = await channel.recv(5)
    await recv_payload(channel, envelope, body, 5, 1 << 20)
    await send_payload(channel, Envelope(type=msg.FIT_RESULT, job=JOB, worker=name, round=1, kind="safetensors",
                                         meta={"num_samples": samples, "compute_s": 0.1}),
                       encode_weights(weights), chunk_bytes=chunk)


async def _round(strategy: Strategy, replies: list[tuple[str, dict[str, np.ndarray], int]],
                 in_order: bool = True) -> tuple[dict[str, np.ndarray], OpenRound, RoundServer]:
    """One round with one trainer per reply; with ``in_order`` each reply is folded before the next is sent."""
    server = RoundServer(job=JOB, token="tok", participants=len(replies), strategy=strategy,
                         idle_timeout=30, payload_timeout=5)
    ws_server = await ws.serve(server.handle, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{ws_server.sockets[0].getsockname()[1]}"
    channels = {name: await _trainer(name, url) for name, _, _ in replies}
    await server.wait_for_workers(len(replies), 5)
    strategy.begin_round(1, GLOBAL)
    rnd = server.open_round(1, sorted(channels))
    await server.send_fit(rnd, msg.FitMeta(), encode_weights(GLOBAL))
    for name, weights, samples in replies:
        await _reply(channels[name], name, weights, samples)
        while in_order and name not in rnd.accepted and name not in rnd.rejected:
            await asyncio.wait_for(rnd.changed.wait(), 5)
            rnd.changed.clear()
    await close_round(rnd, round_timeout=5, min_clients=1)
    result = strategy.finish_round()
    await server.stop_all("done", timeout=0.3)
    ws_server.close()
    return result, rnd, server


def _no_whole_update_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the whole-payload receive fail, so a passing test proves the update was never assembled."""
    async def refuse(*args, **kwargs):
        raise AssertionError("an update was assembled whole")

    monkeypatch.setattr(carrier, "recv_payload", refuse)


def test_streamed_updates_give_the_whole_update_fedavg_result(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_whole_update_buffer(monkeypatch)
    replies = [("a", {"b": np.array([1, 2], np.float32), "w": np.arange(6, dtype=np.float32)}, 1),
               ("b", {"b": np.array([5, 6], np.float32), "w": np.full(6, 4, np.float32)}, 3),
               ("c", {"b": np.array([0.5, 0.25], np.float32), "w": np.full(6, -2, np.float32)}, 4)]
    result, rnd, _ = asyncio.run(_round(FedAvg(), replies))
    assert rnd.accepted == ["a", "b", "c"]
    # hand-computed: (1 * a + 3 * b + 4 * c) / 8
    np.testing.assert_array_equal(result["b"], [(1 + 15 + 2) / 8, (2 + 18 + 1) / 8])
    np.testing.assert_array_equal(result["w"], [(i + 12 - 8) / 8 for i in range(6)])
    whole = FedAvg().aggregate_fit(1, [FitResult(n, w, s) for n, w, s in replies], GLOBAL)
    for key in GLOBAL:
        np.testing.assert_array_equal(result[key], whole[key])


@pytest.mark.parametrize("position", ["after an accepted update", "first"])
def test_nan_in_the_last_chunk_is_rolled_back_and_the_round_goes_on(
        position: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    _no_whole_update_buffer(monkeypatch)
    caplog.set_level(logging.WARNING, "fedmist.aggregator")
    rng = np.random.default_rng(5)
    good = [(n, {"b": rng.normal(size=2).astype(np.float32), "w": rng.normal(size=6).astype(np.float32)}, s)
            for n, s in (("a", 3), ("c", 5))]
    poisoned = ("bad", {"b": np.full(2, 1e6, np.float32), "w": np.array([9, 9, 9, 9, 9, np.nan], np.float32)}, 1000)
    replies = [good[0], poisoned, good[1]] if position != "first" else [poisoned, *good]
    result, rnd, server = asyncio.run(_round(FedAvg(), replies))
    assert sorted(rnd.accepted) == ["a", "c"] and rnd.rejected == {"bad"}
    assert server.workers["bad"].rejected == 1
    assert "tensor 'w' holds non-finite values (rolled back 7 values already folded)" in caplog.text
    expected = FedAvg().aggregate_fit(1, [FitResult(n, w, s) for n, w, s in good], GLOBAL)
    for key in GLOBAL:  # exact: the rollback restores the saved sum values bit for bit
        np.testing.assert_array_equal(result[key], expected[key])


def test_a_wrong_shape_is_refused_from_the_header_before_any_value_is_folded(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "fedmist.aggregator")
    strategy = FedAvg()
    folded_before_refusal: list[int] = []
    original = strategy.open_fold

    def spy(*args, **kwargs):
        folded_before_refusal.append(len(strategy._sum._sums))
        return original(*args, **kwargs)

    strategy.open_fold = spy  # type: ignore[method-assign]
    replies = [("odd", {"b": np.ones(2, np.float32), "w": np.full(7, np.nan, np.float32)}, 1),
               ("a", {"b": np.ones(2, np.float32), "w": np.full(6, 2, np.float32)}, 1)]
    result, rnd, _ = asyncio.run(_round(strategy, replies))
    assert rnd.rejected == {"odd"} and rnd.accepted == ["a"] and folded_before_refusal == [0, 0]
    assert "worker odd: w has shape (7,), expected (6,) (nothing was folded)" in caplog.text
    np.testing.assert_array_equal(result["w"], 2)


def test_robust_strategies_still_take_whole_updates_and_reject_nan(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "fedmist.aggregator")
    replies = [(n, {"b": np.full(2, v, np.float32), "w": np.full(6, v, np.float32)}, 1)
               for n, v in (("a", 1.0), ("b", 5.0), ("c", 2.0))]
    replies.append(("d", {"b": np.zeros(2, np.float32), "w": np.full(6, np.nan, np.float32)}, 1))
    result, rnd, _ = asyncio.run(_round(FedMedian(), replies, in_order=False))
    assert sorted(rnd.accepted) == ["a", "b", "c"] and rnd.rejected == {"d"}
    np.testing.assert_array_equal(result["w"], 2.0)
    assert "holds non-finite values" in caplog.text
