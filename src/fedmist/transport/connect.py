"""Connecting to an aggregator that may not be up yet: exponential backoff with jitter, under a deadline."""

from __future__ import annotations

import asyncio
import logging
import random
import time

from fedmist.transport.base import AuthenticationError, TransportError
from fedmist.transport.security import Security
from fedmist.transport.ws import WsChannel, connect

log = logging.getLogger("fedmist.transport")


async def connect_with_retry(url: str, deadline_s: float = 120.0, first_delay_s: float = 0.1,
                             max_delay_s: float = 5.0, security: Security | None = None) -> WsChannel:
    """Try ``url`` until it answers or ``deadline_s`` passes (then raise the last TransportError)."""
    end = time.monotonic() + deadline_s
    delay = first_delay_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return await connect(url, timeout=max(1.0, min(10.0, end - time.monotonic())), security=security)
        except AuthenticationError:
            raise
        except TransportError as exc:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise TransportError(f"{exc} (gave up after {attempt} attempts in {deadline_s:g} s)") from None
            pause = min(delay * (0.5 + random.random()), remaining)
            log.debug("attempt %d to %s failed (%s); retrying in %.2f s", attempt, url, exc, pause)
            await asyncio.sleep(pause)
            delay = min(delay * 2, max_delay_s)
