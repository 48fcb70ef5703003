"""fedmist.transport.connect: retries with doubling, jittered pauses under a deadline; auth failures at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fedmist.transport import connect as conn
from fedmist.transport.base import AuthenticationError, TransportError


class Script:
    """Stands in for ws.connect: raises the scripted errors, then returns a sentinel channel."""

    def __init__(self, monkeypatch, errors: list[Exception], clock: list[float]) -> None:
        self.errors = list(errors)
        self.timeouts: list[float] = []
        self.pauses: list[float] = []
        self.clock = clock

        async def fake_connect(url: str, timeout: float, security: Any = None) -> str:
            self.timeouts.append(timeout)
            if self.errors:
                raise self.errors.pop(0)
            return "channel"

        async def fake_sleep(seconds: float) -> None:
            self.pauses.append(seconds)
            self.clock[0] += seconds

        monkeypatch.setattr(conn, "connect", fake_connect)
        monkeypatch.setattr(conn.asyncio, "sleep", fake_sleep)
        monkeypatch.setattr(conn.time, "monotonic", lambda: self.clock[0])
        monkeypatch.setattr(conn.random, "random", lambda: 0.5)  # jitter factor 1.0


def test_retries_double_the_pause_up_to_the_cap(monkeypatch) -> None:
    script = Script(monkeypatch, [TransportError("refused")] * 5, [0.0])
    channel = asyncio.run(conn.connect_with_retry("ws://h:1", deadline_s=100, first_delay_s=1, max_delay_s=4))
    assert channel == "channel"
    assert script.pauses == [1, 2, 4, 4, 4]
    assert script.timeouts[0] == 10.0  # each attempt waits at most 10 s


def test_the_deadline_ends_the_retries_with_the_last_error(monkeypatch) -> None:
    script = Script(monkeypatch, [TransportError(f"refused {i}") for i in range(10)], [0.0])
    with pytest.raises(TransportError) as info:
        asyncio.run(conn.connect_with_retry("ws://h:1", deadline_s=2.5, first_delay_s=1, max_delay_s=4))
    assert str(info.value) == "refused 2 (gave up after 3 attempts in 2.5 s)"
    assert script.pauses == [1, 1.5]  # the last pause is cut to the time left
    assert script.timeouts == [2.5, 1.5, 1.0]  # never below one second


def test_an_authentication_failure_is_not_retried(monkeypatch) -> None:
    script = Script(monkeypatch, [AuthenticationError("bad token")], [0.0])
    with pytest.raises(AuthenticationError, match="^bad token$"):
        asyncio.run(conn.connect_with_retry("ws://h:1"))
    assert script.pauses == [] and len(script.timeouts) == 1
