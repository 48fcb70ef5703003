"""A TCP proxy on 127.0.0.1 that a test can make misbehave: cut every connection for a while, throttle, delay,
or truncate the upstream after a byte budget.

Why TCP and not websocket level: the faults a network makes (resets, stalls, half-sent frames) sit below TLS and
the websocket framing, and the workers must survive them exactly as they are. The proxy runs its own event loop
in a daemon thread, so a test drives it with plain method calls while the job runs in other processes; the launcher
points trainers at it with ``FEDMIST_TRAINER_AGG_PORT`` (RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from dataclasses import dataclass

READ_BYTES = 16 * 1024


@dataclass
class ProxyCounters:
    """What went through, per direction (client -> server is "up"), and how connections fared."""

    bytes_up: int = 0
    bytes_down: int = 0
    accepted: int = 0
    refused: int = 0  # connections closed at once because the proxy was dropping
    cut: int = 0  # live connections the proxy aborted


class FaultProxy:
    """Forward ``127.0.0.1:port`` to ``target_host:target_port``; fault controls are thread-safe."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", *, rate_bytes_per_s: float = 0.0,
                 delay_s: float = 0.0, socket_buffer: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.rate = float(rate_bytes_per_s)  # upstream throttle; 0 = unlimited
        self.delay_s = float(delay_s)  # added before each forwarded read, both ways
        self.socket_buffer = socket_buffer  # small kernel buffers make a throttle bite at once
        self.counters = ProxyCounters()
        self.port = 0
        self._drop_until = 0.0
        self._truncate_after: int | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    # ---- control (any thread) ---------------------------------------------------------------------------
    def start(self) -> "FaultProxy":
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="fault-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10) or not self.port:
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def drop_for(self, seconds: float) -> None:
        """Abort every live connection now and refuse (accept, then close) new ones for ``seconds``."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._drop, seconds)

    def truncate_after(self, upstream_bytes: int) -> None:
        """Abort the connection that carries the next ``upstream_bytes`` bytes client -> server, mid-stream."""
        self._truncate_after = upstream_bytes

    def set_rate(self, bytes_per_s: float) -> None:
        self.rate = float(bytes_per_s)

    @property
    def dropping(self) -> bool:
        return time.monotonic() < self._drop_until

    # ---- the loop thread ----------------------------------------------------------------------------------
    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.socket_buffer:  # set before listen(), so accepted sockets advertise the small window
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.socket_buffer)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._server = loop.run_until_complete(asyncio.start_server(self._accept, sock=sock))
        ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            for pair in list(self._links):
                self._abort(pair)
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    def _drop(self, seconds: float) -> None:
        self._drop_until = time.monotonic() + seconds
        for pair in list(self._links):
            self._abort(pair)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.dropping:
            self.counters.refused += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        if self.socket_buffer:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.socket_buffer)
            up_writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.socket_buffer)
        self.counters.accepted += 1
        pair = (writer, up_writer)
        self._links.add(pair)
        await asyncio.gather(self._pump(reader, up_writer, pair, upstream=True),
                             self._pump(up_reader, writer, pair, upstream=False), return_exceptions=True)
        self._links.discard(pair)
        for end in pair:
            end.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter], upstream: bool) -> None:
        try:
            while data := await reader.read(READ_BYTES):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                if upstream and self._truncate_after is not None:
                    if len(data) >= self._truncate_after:
                        data = data[:self._truncate_after]
                        self._truncate_after = None
                        writer.write(data)
                        self.counters.bytes_up += len(data)
                        await writer.drain()
                        self._abort(pair)
                        return
                    self._truncate_after -= len(data)
                writer.write(data)
                if upstream:
                    self.counters.bytes_up += len(data)
                else:
                    self.counters.bytes_down += len(data)
                await writer.drain()
                if upstream and self.rate:
                    await asyncio.sleep(len(data) / self.rate)
            if writer.can_write_eof():
                writer.write_eof()  # half-close: what the sender already sent still arrives
        except (ConnectionError, OSError):
            self._abort(pair)

    def _abort(self, pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        """Reset both ends (RST, like a dead link or a middlebox timeout), not a polite close."""
        if pair in self._links:
            self.counters.cut += 1
            self._links.discard(pair)
        for writer in pair:
            _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0): the peer's next read fails with "connection reset", as after a link loss."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()
