"""How the local launcher starts a worker process: forked from the pre-warmed zygote, or as a fresh interpreter.

:class:`Zygote` drives :mod:`fedmist.launch.zygote` (why it exists is explained there) and hands back
:class:`ZygoteChild` objects with the part of ``subprocess.Popen``'s interface the launcher uses (``pid``,
``poll``, ``wait``, ``send_signal``, ``kill``), so the launcher treats both kinds of process alike. If the
zygote cannot start or stops answering, :meth:`Zygote.spawn` returns None and the launcher falls back to
``subprocess.Popen``: prefork only ever makes start-up faster, never a job fail.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger("fedmist.launch")

READY_TIMEOUT_S = 120.0  # preloading torch takes seconds; a zygote silent for this long is given up on
REPLY_TIMEOUT_S = 10.0


class ZygoteChild:
    """A worker forked by the zygote; its exit code arrives through the zygote's pipe."""

    def __init__(self, pid: int, zygote: Zygote) -> None:
        self.pid = pid
        self._zygote = zygote
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._zygote.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() >= end:
                raise subprocess.TimeoutExpired(f"worker pid {self.pid}", timeout or 0.0)
            time.sleep(0.02)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        # The zygote reaps (and reports) a child only after it has exited, so until poll() says so the PID
        # is still ours (at worst a zombie): signalling it can never hit an unrelated process.
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """The launcher's handle on one zygote process (started at once; preloads in the background)."""

    def __init__(self, stderr_path: Path | None = None) -> None:
        """Start the zygote now; ``stderr_path`` receives its own messages (preload failures), else dropped."""
        env = {**os.environ}
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read by OpenMP when torch loads: must be set before
        env["PYTHONUNBUFFERED"] = "1"
        command = [sys.executable, "-m", "fedmist.launch.zygote"]
        if stderr_path is None:
            self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, env=env)
        else:
            with open(stderr_path, "ab") as err:
                self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                              env=env)
        self._exit_dir = Path(tempfile.mkdtemp(prefix="fedmist-exits-"))  # children leave their exit codes here
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._exits: dict[int, int] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._broken = False
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True,
                                        name="zygote-reader")
        self._reader.start()

    def _read(self, stream: BinaryIO) -> None:
        for raw in stream:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if "exited" in message:
                with self._lock:
                    self._exits[int(message["exited"])] = int(message["code"])
            elif "ready" in message:
                self._ready.set()
            else:
                self._replies.put(message)
        self._broken = True
        self._ready.set()
        self._replies.put({"error": "the zygote exited"})

    def exit_code(self, pid: int) -> int | None:
        with self._lock:
            code = self._exits.get(pid)
        if code is None and self._broken:
            return _orphan_exit_code(pid, self._exit_dir)
        return code

    def spawn(self, argv: list[str], env: dict[str, str], log_path: Path, cwd: str) -> ZygoteChild | None:
        """Fork a worker running ``fedmist <argv>``; None when the zygote is unusable (start it another way)."""
        if self._broken or not self._ready.wait(READY_TIMEOUT_S) or self._broken:
            return None
        request = json.dumps({"argv": argv, "env": env, "log": str(log_path), "cwd": cwd,
                              "exit_dir": str(self._exit_dir)}) + "\n"
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(request.encode())
            self._proc.stdin.flush()
            reply = self._replies.get(timeout=REPLY_TIMEOUT_S)
        except (OSError, queue.Empty):
            self._broken = True
            return None
        if "spawned" not in reply:
            log.warning("zygote could not start a worker: %s", reply.get("error"))
            return None
        return ZygoteChild(int(reply["spawned"]), self)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def close(self) -> None:
        """Stop the zygote (its stdin closes, it exits; one still preloading is killed); workers it started are
        not touched."""
        if not self._ready.is_set():
            self._proc.kill()
        try:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(5.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        shutil.rmtree(self._exit_dir, ignore_errors=True)


def _orphan_exit_code(pid: int, exit_dir: Path) -> int | None:
    """After the zygote died its children were re-parented, so nobody here can wait for them. A child that
    ended says how in ``exit_dir`` (written just before it exits: read first, so a zombie nobody reaps does not
    look alive); one that is gone without a word (killed by a signal) counts as failed."""
    try:
        return int((exit_dir / str(pid)).read_text())
    except (OSError, ValueError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return 1
    except PermissionError:
        return None
    return None
