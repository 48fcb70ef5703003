"""Admission control for a server: how many connections may be open at once and how fast one address may
open new ones. A flood of connections is refused cheaply, before any frame is read."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class ConnectionGate:
    """Token bucket per remote address plus a cap on concurrent connections."""

    max_open: int = 64
    rate_per_s: float = 5.0
    burst: int = 20
    clock: Callable[[], float] = time.monotonic
    open: int = 0
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def fit(self, participants: int) -> "ConnectionGate":
        """Widen the bounds for a job of ``participants`` workers: each may hold a connection and a reconnect,
        and a local job's workers all share one address (127.0.0.1), so its burst must admit them all at once."""
        self.max_open = max(self.max_open, 2 * participants + 8)
        self.burst = max(self.burst, participants + 4)
        return self

    def admit(self, address: str) -> str | None:
        """None when ``address`` may connect now (and counts it open); otherwise the one-line reason."""
        if self.open >= self.max_open:
            return f"too many open connections ({self.max_open})"
        now = self.clock()
        tokens, last = self._buckets.get(address, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
        if tokens < 1.0:
            self._buckets[address] = (tokens, now)
            return f"{address} opens connections faster than {self.rate_per_s:g}/s"
        self._buckets[address] = (tokens - 1.0, now)
        if len(self._buckets) > 10_000:  # bound the table itself
            self._buckets.pop(next(iter(self._buckets)))
        self.open += 1
        return None

    def release(self) -> None:
        self.open = max(0, self.open - 1)
