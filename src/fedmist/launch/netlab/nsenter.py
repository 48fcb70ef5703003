"""Enter a named network namespace from Python: the calling thread (or a freshly forked child) moves there.

Why ctypes: ``os.setns`` arrived in Python 3.12 and this project supports 3.11. A network namespace is a
per-thread attribute on Linux, so the launcher can run its delay relay in one thread inside the links' hub
while its main thread stays where it was; a forked worker enters its edge's namespace before it runs anything.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
NETNS_ENV = "FEDMIST_NETNS"  # the namespace a worker process enters at start (set by the launcher)


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def enter_netns(name: str) -> None:
    """Move the calling thread into network namespace ``name`` (a file under /run/netns); OSError if not."""
    if not name or "/" in name or name in (".", ".."):
        raise OSError(f"bad network namespace name {name!r}")
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fd = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def enter_from_env(env: dict[str, str] | os._Environ[str] | None = None) -> None:
    """In a worker about to start: enter the namespace ``FEDMIST_NETNS`` names, if any (launch/local.py)."""
    name = (env if env is not None else os.environ).get(NETNS_ENV, "")
    if name:
        enter_netns(name)
