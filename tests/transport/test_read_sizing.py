"""A server with sized reads (``transport.read_sizing``) still receives every frame exact -- smaller and larger
than its read buffer, queued or consumed in place -- and ``recv_each_idle`` bounds the silence between frames,
not the whole stream."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

import pytest

from fedmist.transport import ws
from fedmist.transport.base import DeadlineExceeded, recv_each_idle
from fedmist.transport.read_sizing import CappedReads, ReadSizing
from fedmist.transport.security import Security
from fedmist.transport.tls import make_job_pki
from fedmist.wire.envelope import Envelope

FRAME = Envelope(type="w", job="j", worker="c", kind="raw")
SIZES = [10, 64 * 1024, 1024 * 1024 + 7, 3, 64 * 1024]  # the 1 MiB frame is far over the initial buffer
SIZING = ReadSizing.for_frames(64 * 1024)


def _serve_and(handler, client, security: Security | None = None):
    async def main():
        server = await ws.serve(handler, "127.0.0.1", 0, security=security, reads=SIZING)
        scheme = security.scheme if security else "ws"
        try:
            return await asyncio.wait_for(client(f"{scheme}://127.0.0.1:{server.sockets[0].getsockname()[1]}"), 30)
        finally:
            server.close()
            await server.wait_closed()
    return asyncio.run(main())


def test_the_buffer_takes_a_frame_and_a_read_below_picows_growth_threshold():
    frame = 64 * 1024 + 4 * 1024
    assert (frame + SIZING.per_read) / (SIZING.initial - 256) < 0.9
    assert SIZING.initial < 100 * 1024  # the per-connection cost the aggregator states


def test_reads_are_capped_and_everything_else_is_forwarded():
    calls = []

    class Inner:
        def get_buffer(self, hint):
            return memoryview(bytearray(1 << 20))

        def buffer_updated(self, nbytes):
            calls.append(nbytes)

    capped = CappedReads(Inner(), 16 * 1024)
    assert len(capped.get_buffer(-1)) == 16 * 1024
    capped.buffer_updated(5)
    assert calls == [5]


@pytest.mark.parametrize(("in_place", "tls"), [(False, False), (True, False), (True, True)])
def test_frames_smaller_and_larger_than_the_read_buffer_arrive_exact(in_place, tls, tmp_path):
    """Over ws and over wss (where the TLS layer, not the socket, fills the capped buffer)."""
    pki = make_job_pki(tmp_path, "j", ["127.0.0.1"]) if tls else None
    server = Security.from_files("", cert=str(pki.cert), key=str(pki.key)) if pki else None
    client_side = Security.from_files("", ca=str(pki.ca)) if pki else None
    bodies = [os.urandom(n) for n in SIZES]
    got: list[bytes] = []

    async def handler(channel: ws.WsChannel) -> None:
        if in_place:
            def take(envelope, body) -> bool:
                got.append(bytes(body))
                return len(got) == len(bodies)
            await recv_each_idle(channel, take, 10)
        else:
            for _ in bodies:
                got.append(bytes((await channel.recv(10))[1]))
        await channel.send(FRAME)

    async def client(url: str) -> None:
        channel = await ws.connect(url, security=client_side)
        for body in bodies:
            await channel.send(replace(FRAME, size=len(body)), body)
        await channel.recv(10)
        await channel.close()

    _serve_and(handler, client, server)
    assert got == bodies


def test_recv_each_idle_bounds_the_silence_between_frames_not_the_stream():
    seen: list[int] = []
    ended: list[str] = []

    async def handler(channel: ws.WsChannel) -> None:
        try:
            await recv_each_idle(channel, lambda envelope, body: seen.append(len(body)) and False, 0.6)
        except DeadlineExceeded as exc:
            ended.append(str(exc))

    async def client(url: str) -> None:
        channel = await ws.connect(url)
        for _ in range(6):  # 6 frames 0.25 s apart: 1.5 s in all, longer than the idle bound
            await channel.send(replace(FRAME, size=4), b"abcd")
            await asyncio.sleep(0.25)
        for _ in range(40):  # then silence until the server gives up
            if ended:
                break
            await asyncio.sleep(0.1)
        await channel.close()

    _serve_and(handler, client)
    assert seen == [4] * 6
    assert len(ended) == 1 and ended[0].endswith("no message within 0.6 s")
