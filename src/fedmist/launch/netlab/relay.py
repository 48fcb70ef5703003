"""The delay relay: a TCP forwarder that holds every chunk of data for a fixed time before passing it on.

Why userspace: this kernel has no ``netem``, so the one-way delay of a long link (50 ms each way on the
benchmark's links) is added here, on the far end of each edge's shaped link. Each edge dials the relay on
its link; the relay dials the aggregator on the cloud's link and forwards both directions, each chunk
released ``delay_s`` after it arrived. What this models: every request/reply exchange of the protocol pays
the round trip (2 x delay) it would on a long link. What it does not: TCP's own RTT on the shaped segment
stays short, so window-limited throughput of a long fat pipe is not reproduced (docs/DESIGN.md section 7).

Every buffer is bounded (``MAX_BUFFER_BYTES`` per direction: the reader waits when the writer is behind),
and the relay counts the bytes it carried per edge and direction -- what actually crossed each link.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fedmist.launch.netlab.nsenter import enter_netns

READ_BYTES = 64 * 1024
MAX_BUFFER_BYTES = 4 << 20  # per direction per connection
CONNECT_TIMEOUT_S = 10.0


@dataclass
class LinkCounters:
    """What crossed one edge's link through the relay (payload bytes, TLS and websocket framing included)."""

    bytes_up: int = 0
    bytes_down: int = 0
    connections: int = 0
    open: int = 0
    first_byte_at: float | None = None  # time.time() of the first byte up
    last_byte_at: float | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        return {"bytes_up": self.bytes_up, "bytes_down": self.bytes_down, "connections": self.connections,
                "open": self.open, "first_byte_at": self.first_byte_at, "last_byte_at": self.last_byte_at}


@dataclass(frozen=True)
class Route:
    """Listen on ``listen`` (in the relay's namespace), forward to ``target`` after ``delay_s`` each way."""

    name: str
    listen: tuple[str, int]
    target: tuple[str, int]
    delay_s: float


@dataclass
class _Pipe:
    """One direction of one connection: chunks stamped with their release time, bytes bounded."""

    delay_s: float
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    buffered: int = 0
    room: asyncio.Event = field(default_factory=asyncio.Event)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float,
                count: Callable[[int], None]) -> None:
    """Read from ``reader`` and write each chunk ``delay_s`` later to ``writer``; EOF is delayed the same way."""
    pipe = _Pipe(delay_s)
    pipe.room.set()

    async def release() -> None:
        while True:
            due, chunk = await pipe.queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if chunk is None:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()
            pipe.buffered -= len(chunk)
            if pipe.buffered < MAX_BUFFER_BYTES:
                pipe.room.set()

    releaser = asyncio.create_task(release())
    try:
        while True:
            await pipe.room.wait()
            chunk = await reader.read(READ_BYTES)
            pipe.queue.put_nowait((time.monotonic() + delay_s, chunk or None))
            if not chunk:
                break
            count(len(chunk))
            pipe.buffered += len(chunk)
            if pipe.buffered >= MAX_BUFFER_BYTES:
                pipe.room.clear()
        await releaser
    finally:
        releaser.cancel()


class DelayRelay:
    """The relays of every edge link, on one event loop in a thread inside the hub namespace ``netns``."""

    def __init__(self, routes: list[Route], netns: str | None = None) -> None:
        self.routes = routes
        self.netns = netns
        self.counters = {route.name: LinkCounters() for route in routes}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._error: BaseException | None = None

    def start(self) -> "DelayRelay":
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="fedmist-delay-relay", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("delay relay did not start in 10 s")
        if self._error is not None:
            raise RuntimeError(f"delay relay: {self._error}")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def snapshot(self) -> dict[str, dict[str, float | int | None]]:
        return {name: counters.to_dict() for name, counters in self.counters.items()}

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            if self.netns:
                enter_netns(self.netns)  # this thread only: sockets made here live in the hub
            for route in self.routes:
                self._servers.append(loop.run_until_complete(asyncio.start_server(
                    lambda r, w, route=route: self._connection(route, r, w), *route.listen, reuse_address=True)))
        except BaseException as exc:  # noqa: BLE001 - reported to start() as one line
            self._error = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            for server in self._servers:
                server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    async def _connection(self, route: Route, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counters = self.counters[route.name]
        counters.connections += 1
        counters.open += 1
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*route.target), CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError):
            counters.open -= 1
            writer.close()
            return

        def up(n: int) -> None:
            now = time.time()
            counters.bytes_up += n
            counters.first_byte_at = counters.first_byte_at or now
            counters.last_byte_at = now

        def down(n: int) -> None:
            counters.bytes_down += n

        tasks = [asyncio.create_task(_pump(reader, up_writer, route.delay_s, up)),
                 asyncio.create_task(_pump(up_reader, writer, route.delay_s, down))]
        try:
            # Either side failing ends the connection: a reset on the edge's link must reach the aggregator.
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            if any(t.exception() for t in done if not t.cancelled()):
                for t in tasks:
                    t.cancel()
            else:
                await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:  # the relay stops: end quietly (asyncio logs a cancelled handler task)
            for t in tasks:
                t.cancel()
        finally:
            counters.open -= 1
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()
