"""The admission handshake over real sockets on 127.0.0.1, plain ws (no TLS), as an observer on the path sees it:
the token never crosses the wire, a recorded session replayed is refused, a frame from one session spliced into
another (or replayed, or reordered, inside one) is refused, and a trainer refuses an aggregator that cannot prove
it holds the token."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fedmist.transport import handshake, ws
from fedmist.transport.base import AuthenticationError, TransportError
from fedmist.transport.security import Security
from fedmist.wire.envelope import Envelope, ProtocolError
from fedmist.worker.admission import receive_hello, reply_error

TOKEN = "job-token-" + "k" * 32
JOB = "job"
HELLO = {"role": "trainer", "num_samples": 7, "dataset": "d"}


class RecordingRelay:
    """A TCP relay that keeps every byte each way, as a passive observer of a plain-ws channel would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = bytearray()    # client -> server
        self.down = bytearray()  # server -> client
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> "RecordingRelay":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pump(reader, up_writer, self.up), self._pump(up_reader, writer, self.down))

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray) -> None:
        try:
            while data := await reader.read(65536):
                record += data
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()


class Aggregator:
    """A server that admits like the real ones (handshake, then HELLO) and then reads frames, keeping each
    connection's outcome: the admitted worker and the frames it accepted, or the refusal."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.outcomes: list[tuple[str, list[str]]] = []

    async def handle(self, channel: ws.WsChannel) -> None:
        accepted: list[str] = []
        try:
            hello, _ = await receive_hello(channel, self.token, JOB, 5)
            accepted.append(f"hello from {hello.worker}")
            await channel.send(Envelope(type="ack", job=JOB, worker="aggregator", meta={"received": 0}))
            while True:
                envelope, _ = await channel.recv(5)
                accepted.append(envelope.type)
        except (ProtocolError, TransportError) as exc:
            accepted.append(f"refused: {exc}")
            if isinstance(exc, ProtocolError):
                await reply_error(channel, JOB, str(exc))
        self.outcomes.append((channel.peer, accepted))


def _frames(stream: bytes) -> list[tuple[int, int, bytes]]:
    """A recorded websocket stream (HTTP upgrade, then frames) as (opcode, where the frame starts, payload),
    unmasked as any observer can (a client's mask travels in its frame)."""
    frames = []
    at = stream.index(b"\r\n\r\n") + 4
    while at < len(stream):
        opcode, masked, length = stream[at] & 0x0F, stream[at + 1] & 0x80, stream[at + 1] & 0x7F
        head = 2 + {126: 2, 127: 8}.get(length, 0)
        if length >= 126:
            length = int.from_bytes(stream[at + 2:at + head], "big")
        mask = stream[at + head:at + head + 4] if masked else b"\0\0\0\0"
        body_at = at + head + (4 if masked else 0)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(stream[body_at:body_at + length]))
        frames.append((opcode, at, payload))
        at = body_at + length
    return frames


def _without_close(stream: bytes) -> bytes:
    """A recorded client stream cut before its close frame (a replay that hangs up at once proves nothing)."""
    return next((stream[:at] for opcode, at, _ in _frames(stream) if opcode == 0x8), stream)


def _client(worker: str = "edge1", token: str = TOKEN) -> Security:
    return Security(token=token, job=JOB, worker=worker)


def _run(handler: Callable[[ws.WsChannel], Awaitable[None]],
         body: Callable[[int, RecordingRelay], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        server = await ws.serve(handler, "127.0.0.1", 0)
        relay = await RecordingRelay(server.sockets[0].getsockname()[1]).start()
        try:
            return await asyncio.wait_for(body(server.sockets[0].getsockname()[1], relay), 30)
        finally:
            await relay.stop()
            server.close()
            await server.wait_closed()
    return asyncio.run(main())


async def _session(url: str, security: Security, frames: int = 2) -> None:
    channel = await ws.connect(url, security=security, timeout=5)
    await channel.send(Envelope(type="hello", job=JOB, worker=security.worker, meta=HELLO))
    assert (await channel.recv(5))[0].type == "ack"
    for _ in range(frames):
        await channel.send(Envelope(type="records", job=JOB, worker=security.worker, kind="raw"), b"bits" * 8)
    await channel.close()


async def _settle(aggregator: Aggregator, count: int) -> None:
    while len(aggregator.outcomes) < count:
        await asyncio.sleep(0.02)


def test_an_observer_sees_no_token_and_a_recorded_session_replayed_is_refused() -> None:
    aggregator = Aggregator()

    async def body(_port: int, relay: RecordingRelay) -> tuple[bytes, bytes]:
        await _session(f"ws://127.0.0.1:{relay.port}", _client())
        await _settle(aggregator, 1)
        recorded_up, recorded_down = bytes(relay.up), bytes(relay.down)
        # replay what the trainer sent (websocket upgrade, auth, HELLO, records; not its close) on a new connection
        reader, writer = await asyncio.open_connection("127.0.0.1", _port)
        writer.write(_without_close(recorded_up))
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(65536), 5)  # the upgrade answer, then the new challenge
        await _settle(aggregator, 2)
        writer.close()
        assert b"101 Switching Protocols" in reply
        return recorded_up, recorded_down

    up, down = _run(aggregator.handle, body)
    (_, first), (_, replayed) = aggregator.outcomes
    assert first[:3] == ["hello from edge1", "records", "records"]
    assert replayed == ["refused: worker 'edge1' presented a wrong token"]
    # (c) the token, in any of the forms a careless implementation might send, never crossed the wire
    seen = [up, down] + [payload for stream in (up, down) for _, _, payload in _frames(stream)]
    for form in (TOKEN.encode(), TOKEN.encode().hex().encode(), handshake.handshake_key(TOKEN),
                 handshake.handshake_key(TOKEN).hex().encode()):
        assert not any(form in data for data in seen)
    assert any(b'"type":"auth"' in data for data in seen) and b'"type":"challenge"' in down  # it was captured


def test_frames_spliced_replayed_or_reordered_are_refused() -> None:
    aggregator = Aggregator()

    async def body(port: int, _relay: RecordingRelay) -> None:
        url = f"ws://127.0.0.1:{port}"

        async def admitted() -> ws.WsChannel:
            channel = await ws.connect(url, security=_client(), timeout=5)
            await channel.send(Envelope(type="hello", job=JOB, worker="edge1", meta=HELLO))
            assert (await channel.recv(5))[0].type == "ack"
            return channel

        def records(n: int) -> Envelope:
            return Envelope(type="records", job=JOB, worker="edge1", seq=n, kind="raw", size=3)

        # (b) a frame sealed in session A, sent in session B at the same place: B's keys differ
        a = await admitted()
        spliced = a.seal(records(1), b"abc")
        await a.close()
        await _settle(aggregator, 1)
        b = await admitted()
        await b.send_raw(spliced)
        assert (await b.recv(5))[0].type == "error"
        await b.close()
        await _settle(aggregator, 2)
        # inside one session: the same frame twice, and two frames swapped
        c = await admitted()
        first = c.seal(records(1), b"abc")
        await c.send_raw(first)
        await c.send_raw(first)
        await c.close()
        await _settle(aggregator, 3)
        d = await admitted()
        one, two = d.seal(records(1), b"abc"), d.seal(records(2), b"abc")
        await d.send_raw(two)
        await d.send_raw(one)
        await d.close()
        await _settle(aggregator, 4)

    _run(aggregator.handle, body)
    refusal = ("refused: frame MAC mismatch ('records' claiming worker 'edge1'): altered, replayed or reordered "
               "in transit, or sent in another session")
    outcomes = [accepted for _, accepted in aggregator.outcomes]
    assert outcomes[0][0] == "hello from edge1"
    assert outcomes[1] == ["hello from edge1", refusal]
    assert outcomes[2] == ["hello from edge1", "records", refusal]
    assert outcomes[3] == ["hello from edge1", refusal]


def test_a_wrong_token_is_refused_with_the_documented_lines() -> None:
    aggregator = Aggregator()

    async def body(port: int, _relay: RecordingRelay) -> str:
        url = f"ws://127.0.0.1:{port}"
        with pytest.raises(AuthenticationError) as refused:
            await ws.connect(url, security=_client(token="not-the-token"), timeout=5)
        await _settle(aggregator, 1)
        return str(refused.value)

    message = _run(aggregator.handle, body)
    assert message.endswith(": the aggregator refused this worker: worker 'edge1' presented a wrong token")
    assert aggregator.outcomes[0][1] == ["refused: worker 'edge1' presented a wrong token"]


def _impostor(proof: Callable[[dict[str, Any]], str]) -> Callable[[ws.WsChannel], Awaitable[None]]:
    """An aggregator without the token: it challenges, reads the trainer's answer, and makes up a proof."""
    async def handle(channel: ws.WsChannel) -> None:
        await channel.send(Envelope(type="challenge", job=JOB, worker="aggregator",
                                    meta={"nonce": secrets.token_hex(32)}))
        auth, _ = await channel.recv(5)
        await channel.send(Envelope(type="welcome", job=JOB, worker="aggregator", meta={"proof": proof(auth.meta)}))
        try:
            await channel.recv(5)  # the trainer hangs up without a frame
        except TransportError:
            pass
    return handle


@pytest.mark.parametrize("proof", [lambda auth: secrets.token_hex(32),  # a guess
                                   lambda auth: auth["proof"]])  # the trainer's own proof reflected back
def test_a_trainer_refuses_an_aggregator_that_cannot_prove_it_holds_the_token(proof) -> None:
    async def body(port: int, _relay: RecordingRelay) -> str:
        with pytest.raises(AuthenticationError) as refused:
            await ws.connect(f"ws://127.0.0.1:{port}", security=_client(), timeout=5)
        return str(refused.value)

    message = _run(_impostor(proof), body)
    assert message.startswith("ws://127.0.0.1:") and message.split(": ", 1)[1] == (
        "the aggregator did not prove that it holds the job token (it holds another token, or it is not this "
        "job's aggregator)")


def test_handshake_messages_are_validated_and_bounded_in_time() -> None:
    """A malformed challenge, and an aggregator that never challenges, each end the attempt with one line."""
    async def bad_challenge(channel: ws.WsChannel) -> None:
        await channel.send(Envelope(type="challenge", job=JOB, worker="aggregator", meta={"nonce": "short"}))
        await asyncio.sleep(1)

    async def silent(channel: ws.WsChannel) -> None:
        await asyncio.sleep(3)

    async def body(port: int, _relay: RecordingRelay) -> str:
        with pytest.raises(TransportError) as refused:
            await ws.connect(f"ws://127.0.0.1:{port}", security=_client(), timeout=1)
        return str(refused.value)

    malformed = _run(bad_challenge, body)
    assert malformed.endswith(": handshake failed: 'challenge' meta.nonce: String should match pattern "
                              "'^[0-9a-f]{64}$'"), malformed
    late = _run(silent, body)
    assert late.endswith(": handshake not finished within 1 s"), late


def test_a_trainer_without_the_handshake_is_refused_by_name() -> None:
    """A peer that skips the handshake (an old release, or a client without the token) is refused."""
    aggregator = Aggregator()

    async def body(port: int, _relay: RecordingRelay) -> dict[str, Any]:
        channel = await ws.connect(f"ws://127.0.0.1:{port}", timeout=5)
        challenge, _ = await channel.recv(5)
        assert challenge.type == "challenge"
        await channel.send(Envelope(type="hello", job=JOB, worker="edge1", meta=HELLO))
        raw = await channel.recv_raw(5)
        await _settle(aggregator, 1)
        length = int.from_bytes(raw[:4], "big")
        return json.loads(raw[4:4 + length])

    reply = _run(aggregator.handle, body)
    assert reply["type"] == "error" and reply["meta"]["reason"] == "expected the handshake's 'auth', got 'hello'"


def test_a_peer_of_the_previous_protocol_is_refused_by_version() -> None:
    """A release-2 trainer (token in its HELLO, no handshake) hears why it is refused, in one line."""
    aggregator = Aggregator()

    async def body(port: int, _relay: RecordingRelay) -> dict[str, Any]:
        channel = await ws.connect(f"ws://127.0.0.1:{port}", timeout=5)
        await channel.recv(5)  # the challenge, which a release-2 trainer does not expect
        header = json.dumps({"v": 2, "type": "hello", "job": JOB, "worker": "edge1",
                             "meta": {"role": "trainer", "token": TOKEN, "num_samples": 7}}).encode()
        await channel.send_raw(len(header).to_bytes(4, "big") + header + bytes(32))  # header, its v2 MAC
        raw = await channel.recv_raw(5)
        await _settle(aggregator, 1)
        length = int.from_bytes(raw[:4], "big")
        return json.loads(raw[4:4 + length])

    reply = _run(aggregator.handle, body)
    assert reply["meta"]["reason"] == "protocol version 2 not supported (this peer speaks 3)"
    assert aggregator.outcomes[0][1] == ["refused: protocol version 2 not supported (this peer speaks 3)"]
