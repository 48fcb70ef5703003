"""The round engine's connection side over real websockets: streaming results, rejects, late and lost workers."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from fedmist.strategy import FedAvg
from fedmist.transport import ws
from fedmist.transport.base import AuthenticationError
from fedmist.transport.payload import recv_payload, send_payload
from fedmist.transport.security import Security
from fedmist.wire import messages as msg
from fedmist.wire.arrays import decode_weights, encode_weights
from fedmist.wire.envelope import Envelope
from fedmist.worker.errors import JobFailure
from fedmist.worker.rounds.aggregator import close_round
from fedmist.worker.rounds.server import RoundServer

JOB = "t"
GLOBAL = {"w": np.zeros(4, np.float32), "b": np.zeros(2, np.float32)}


class FakeTrainer:
    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url

    async def join(self, token: str = "tok") -> "FakeTrainer":
        """Connect (the handshake proves ``token``) and say HELLO."""
        self.channel = await ws.connect(self.url, security=Security(token=token, job=JOB, worker=self.name))
        await self.channel.send(Envelope(type=msg.HELLO, job=JOB, worker=self.name,
                                         meta={"role": "trainer", "num_samples": 10}))
        return self

    async def next_fit(self) -> tuple[int, dict[str, np.ndarray]]:
        envelope, body = await self.channel.recv(5)
        msg.parse_meta(envelope, msg.FIT)
        _, payload = await recv_payload(self.channel, envelope, body, 5, 1 << 20)
        return envelope.round, decode_weights(payload)

    async def reply(self, number: int, weights: dict[str, np.ndarray], samples: int) -> None:
        await send_payload(self.channel, Envelope(
            type=msg.FIT_RESULT, job=JOB, worker=self.name, round=number, kind="safetensors",
            meta={"num_samples": samples, "compute_s": 0.1}), encode_weights(weights), chunk_bytes=16)


async def _start(participants: int) -> tuple[RoundServer, object, str]:
    server = RoundServer(job=JOB, token="tok", participants=participants, strategy=FedAvg(min_clients=1),
                         idle_timeout=30, payload_timeout=5)
    ws_server = await ws.serve(server.handle, "127.0.0.1", 0)
    port = ws_server.sockets[0].getsockname()[1]
    return server, ws_server, f"ws://127.0.0.1:{port}"


async def _first_round(names: list[str]) -> tuple[RoundServer, object, list[FakeTrainer], object]:
    """A server for ``names``, each of them joined, round 1 opened for all and its FIT sent."""
    server, ws_server, url = await _start(len(names))
    trainers = [await FakeTrainer(n, url).join() for n in names]
    await server.wait_for_workers(len(names), 5)
    server.strategy.begin_round(1, GLOBAL)
    rnd = server.open_round(1, list(names))
    await server.send_fit(rnd, msg.FitMeta(), encode_weights(GLOBAL))
    return server, ws_server, trainers, rnd


def _full(value: float) -> dict[str, np.ndarray]:
    return {k: np.full_like(v, value) for k, v in GLOBAL.items()}


def test_round_aggregates_as_results_arrive_and_rejects_nan_and_wrong_shape(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "fedmist.aggregator")

    async def scenario() -> tuple[dict[str, np.ndarray], object, RoundServer]:
        server, ws_server, url = await _start(4)
        trainers = [await FakeTrainer(f"edge{i}", url).join() for i in range(1, 5)]
        assert await server.wait_for_workers(4, 5) == ["edge1", "edge2", "edge3", "edge4"]
        server.strategy.begin_round(1, GLOBAL)
        rnd = server.open_round(1, server.connected)
        await server.send_fit(rnd, msg.FitMeta(model="lenet5"), encode_weights(GLOBAL))
        fits = [await t.next_fit() for t in trainers]
        assert all(number == 1 and np.array_equal(w["w"], GLOBAL["w"]) for number, w in fits)
        await trainers[0].reply(1, _full(1.0), samples=1)
        await trainers[1].reply(1, _full(4.0), samples=3)
        await trainers[2].reply(1, {**_full(1.0), "w": np.array([1, np.nan, 1, 1], np.float32)}, samples=5)
        await trainers[3].reply(1, {**_full(1.0), "w": np.ones(5, np.float32)}, samples=5)
        late = await close_round(rnd, round_timeout=5, min_clients=2)
        result = server.strategy.finish_round()
        for t in trainers:
            await t.channel.close()
        ws_server.close()
        return result, (late, rnd), server

    result, (late, rnd), server = asyncio.run(scenario())
    assert late == [] and sorted(rnd.accepted) == ["edge1", "edge2"] and rnd.rejected == {"edge3", "edge4"}
    np.testing.assert_allclose(result["w"], np.full(4, (1 * 1 + 3 * 4) / 4))  # sample-weighted: 13/4
    assert server.workers["edge3"].rejected == 1 and server.workers["edge1"].rounds == 1
    assert server.workers["edge1"].bytes_up > 0 and server.workers["edge1"].bytes_down > 0
    assert "non-finite" in caplog.text and "shape (5,)" in caplog.text


def test_deadline_closes_with_quorum_counts_lost_and_discards_late() -> None:
    async def scenario() -> tuple[list[str], object, RoundServer, dict]:
        server, ws_server, [a, b, c], rnd = await _first_round(["a", "b", "c"])
        for t in (a, b, c):
            await t.next_fit()
        await a.reply(1, _full(2.0), samples=10)
        await b.channel.close()  # b dies mid-round: lost
        late = await close_round(rnd, round_timeout=0.5, min_clients=1)  # c never answers in time
        result = server.strategy.finish_round()
        await c.reply(1, _full(9.0), samples=10)  # too late: read to the end and dropped
        for _ in range(50):
            if server.workers["c"].late:
                break
            await asyncio.sleep(0.02)
        b2 = await FakeTrainer("b", a.url).join()  # b comes back: it is in the next round, with the new model
        await server.wait_for_workers(3, 5)
        server.strategy.begin_round(2, result)
        rnd2 = server.open_round(2, server.connected)
        await server.send_fit(rnd2, msg.FitMeta(), encode_weights(result))
        number, weights = await b2.next_fit()
        assert number == 2 and np.allclose(weights["w"], 2.0)
        await server.stop_all("done", timeout=0.3)
        ws_server.close()
        return late, rnd, server, result

    late, rnd, server, result = asyncio.run(scenario())
    assert server.workers["b"].connections == 2
    assert rnd.accepted == ["a"] and rnd.lost == {"b"} and late == ["c"]
    np.testing.assert_allclose(result["w"], 2.0)
    assert server.workers["b"].lost == 1 and server.workers["b"].phase == "Stopped"  # lost once, then back
    assert server.workers["c"].late == 1


def test_round_without_quorum_fails_with_a_reason_after_a_bounded_wait() -> None:
    async def scenario() -> None:
        server, ws_server, [a, b], rnd = await _first_round(["a", "b"])
        await a.channel.close()
        try:
            await close_round(rnd, round_timeout=0.2, min_clients=2)
        finally:
            await b.channel.close()
            ws_server.close()

    with pytest.raises(JobFailure, match=r"round 1: only 0 result\(s\) from 2 .*lost \['a'\].*no answer from \['b'\]"):
        asyncio.run(scenario())


def test_wrong_token_and_unexpected_worker_get_an_error_reply() -> None:
    async def scenario() -> tuple[str, str, list[str]]:
        server, ws_server, url = await _start(1)
        with pytest.raises(AuthenticationError) as bad:
            await FakeTrainer("x", url).join(token="wrong")
        await FakeTrainer("a", url).join()
        await server.wait_for_workers(1, 5)
        extra = await FakeTrainer("b", url).join()
        env2, _ = await extra.channel.recv(5)
        connected = server.connected
        ws_server.close()
        return str(bad.value), env2.meta["reason"], connected

    wrong, unexpected, connected = asyncio.run(scenario())
    assert wrong.endswith(": the aggregator refused this worker: worker 'x' presented a wrong token"), wrong
    assert "not expected" in unexpected and connected == ["a"]


def test_a_second_connection_claiming_a_live_trainer_is_refused_one_that_is_half_open_is_replaced() -> None:
    """While a trainer's connection answers pings a newcomer with its name is refused and the trainer keeps its
    place; once that connection stops answering (half-open after a fault) the reconnect takes it over."""
    async def scenario() -> tuple[str, str, list[str], int]:
        server, ws_server, url = await _start(1)
        first = await FakeTrainer("a", url).join()
        await server.wait_for_workers(1, 5)
        duplicate = await FakeTrainer("a", url).join()
        refused, _ = await duplicate.channel.recv(5)
        peer = f"127.0.0.1:{first.channel.local_address[1]}"
        still = server.connected
        first.channel._listener.transport.underlying_transport.pause_reading()  # gone without a FIN
        await FakeTrainer("a", url).join()
        for _ in range(100):
            if server.workers["a"].connections == 2:
                break
            await asyncio.sleep(0.05)
        ws_server.close()
        return refused.meta["reason"], peer, still, server.workers["a"].connections

    reason, peer, still, connections = asyncio.run(scenario())
    assert reason == f"worker 'a' is already connected (from {peer}, which still answers)"
    assert still == ["a"] and connections == 2


def test_an_update_larger_than_the_model_is_refused_before_buffering(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "fedmist.aggregator")

    async def scenario() -> tuple[object, str]:
        server, ws_server, (a,), rnd = await _first_round(["a"])
        server.max_update_bytes = len(encode_weights(GLOBAL)) + 100
        await a.next_fit()
        await a.reply(1, {**GLOBAL, "w": np.zeros(10_000, np.float32)}, samples=1)
        reply, _ = await a.channel.recv(5)
        await asyncio.wait_for(rnd.changed.wait(), 5)
        ws_server.close()
        return rnd, reply.meta["reason"]

    rnd, reason = asyncio.run(scenario())
    assert "exceeds the limit" in reason and rnd.lost == {"a"} and not rnd.accepted


def test_a_duplicate_result_for_a_round_already_counted_is_dropped() -> None:
    """A trainer that resends its FIT_RESULT (a retry after a reconnect) is counted once: the second copy is
    read to the end, booked as late, and the aggregate is that of one result per worker."""
    async def scenario() -> tuple[dict[str, np.ndarray], object, RoundServer]:
        server, ws_server, [a, b], rnd = await _first_round(["a", "b"])
        for t in (a, b):
            await t.next_fit()
        await a.reply(1, _full(2.0), samples=10)
        await a.reply(1, _full(2.0), samples=10)  # the duplicate
        for _ in range(100):
            if server.workers["a"].late:
                break
            await asyncio.sleep(0.02)
        await b.reply(1, _full(4.0), samples=10)
        await close_round(rnd, round_timeout=5, min_clients=2)
        result = server.strategy.finish_round()
        await server.stop_all("done", timeout=0.3)
        ws_server.close()
        return result, rnd, server

    result, rnd, server = asyncio.run(scenario())
    assert sorted(rnd.accepted) == ["a", "b"]
    assert server.workers["a"].rounds == 1 and server.workers["a"].late == 1
    np.testing.assert_allclose(result["w"], 3.0)  # (2 + 4) / 2, not (2 + 2 + 4) / 3


def test_an_update_announcing_any_size_but_the_models_is_refused_at_its_first_frame() -> None:
    """The first FIT_RESULT frame announces 10**9 bytes: the trainer hears why at once (no second frame is
    ever sent) and is dropped from the round; nothing of it was buffered."""
    exact = len(encode_weights(GLOBAL))

    async def scenario() -> tuple[object, str, RoundServer]:
        server, ws_server, (a,), rnd = await _first_round(["a"])
        server.update_bytes = exact
        await a.next_fit()
        first = b"\0" * 16
        await a.channel.send(Envelope(type=msg.FIT_RESULT, job=JOB, worker="a", round=1, kind="safetensors",
                                      size=10**9, meta={"num_samples": 1, "compute_s": 0.1}), first)
        reply, _ = await a.channel.recv(5)
        await asyncio.wait_for(rnd.changed.wait(), 5)
        ws_server.close()
        return rnd, reply.meta["reason"], server

    rnd, reason, server = asyncio.run(scenario())
    assert reason == f"'fit_result' announces 1000000000 bytes; the global model's layout encodes to exactly {exact}"
    assert rnd.lost == {"a"} and not rnd.accepted and server.workers["a"].bytes_up == 0


@pytest.mark.parametrize(("hello", "claimed", "cap", "why"), [
    (10, 10**10, 0, "update reports 10000000000 samples, but the trainer's HELLO declared 10"),
    (10**10, 10**10, 100, "update reports 10000000000 samples, more than the job's max_samples 100"),
    (10, 0, 0, "update reports 0 samples: an update must come from at least one"),
])
def test_a_sample_count_beyond_the_hello_or_the_jobs_cap_cannot_weigh_in(caplog: pytest.LogCaptureFixture, hello: int,
                                                                         claimed: int, cap: int, why: str) -> None:
    """A peer claiming 10**10 samples would own the weighted mean: its update is rejected with the reason and
    the round's aggregate is the honest trainer's alone."""
    caplog.set_level(logging.WARNING, "fedmist.aggregator")

    async def scenario() -> tuple[dict[str, np.ndarray], object]:
        server, ws_server, url = await _start(2)
        server.max_samples = cap
        honest = await FakeTrainer("honest", url).join()
        greedy = FakeTrainer("greedy", url)
        greedy.channel = await ws.connect(url, security=Security(token="tok", job=JOB, worker="greedy"))
        await greedy.channel.send(Envelope(type=msg.HELLO, job=JOB, worker="greedy",
                                           meta={"role": "trainer", "num_samples": hello}))
        await server.wait_for_workers(2, 5)
        server.strategy.begin_round(1, GLOBAL)
        rnd = server.open_round(1, ["greedy", "honest"])
        await server.send_fit(rnd, msg.FitMeta(), encode_weights(GLOBAL))
        await honest.next_fit()
        await greedy.next_fit()
        await greedy.reply(1, _full(100.0), samples=claimed)
        await honest.reply(1, _full(1.0), samples=10)
        await close_round(rnd, round_timeout=5, min_clients=1)
        result = server.strategy.finish_round()
        for t in (honest, greedy):
            await t.channel.close()
        ws_server.close()
        return result, rnd

    result, rnd = asyncio.run(scenario())
    assert rnd.accepted == ["honest"] and rnd.rejected == {"greedy"}
    np.testing.assert_allclose(result["w"], 1.0)
    assert f"rejected the round 1 update of greedy: {why}" in caplog.text
