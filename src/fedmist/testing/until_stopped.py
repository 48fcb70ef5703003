"""Block a standalone test server's main thread until SIGTERM or Ctrl-C (the emulated API, the kubelet)."""

from __future__ import annotations

import signal
import threading


def wait_until_stopped() -> None:
    """Return on SIGTERM or KeyboardInterrupt; the caller then stops what it serves."""
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
