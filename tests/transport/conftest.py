"""Shared set-up of the ws transport tests: one real server and client on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fedmist.transport import ws


def _serve_and(handler: Callable[[ws.WsChannel], Awaitable[None]], client: Callable[[str], Awaitable[Any]]) -> Any:
    """Serve ``handler`` on a free loopback port, run ``client(url)`` against it (30 s at most), return its result."""
    async def main() -> Any:
        server = await ws.serve(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await asyncio.wait_for(client(f"ws://127.0.0.1:{port}"), 30)
        finally:
            server.close()
            await server.wait_closed()
    return asyncio.run(main())


@pytest.fixture()
def serve_and() -> Callable[..., Any]:
    return _serve_and
