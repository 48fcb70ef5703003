"""A bounded pool of local worker processes that train virtual clients (default: one per core).

Why forked processes over pipes: the parent loads the dataset once and the workers inherit it (copy-on-write
pages, never written), so a pool of K workers costs K models, not K datasets; and each worker trains with
one torch thread, so K workers use K cores without oversubscribing them. Frames are
:mod:`fedmist.simulate.messages` (JSON header + raw bytes), never pickles. The pool is forked before the
parent runs any torch operation (its thread pools do not survive a fork).

Both pools (this one and :class:`fedmist.simulate.ray_pool.RayPool`) offer ``run_round(round, global_bytes,
tasks)``, yielding each client's result as it arrives, so the engine folds updates one at a time.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedmist.simulate.client import ClientRunner, RunnerSpec
from fedmist.simulate.messages import PoolProtocolError, pack, unpack

Task = tuple[dict[str, Any], bytes]  # (fit header, the client's int32 row indices)
Result = tuple[dict[str, Any], memoryview]  # (result header, safetensors weights)


class SimulationError(RuntimeError):
    """A pool worker failed (its one-line reason) or went silent: the simulation stops."""


def peak_rss_mb(pid: int) -> float:
    """A live process's peak resident set (VmHWM) in MiB; 0.0 when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def _serve(conn: multiprocessing.connection.Connection, spec: RunnerSpec, data: tuple[Any, np.ndarray] | None) -> None:
    """A worker's loop: build the runner, say ready, then answer frames until ``stop`` or the pipe closes."""
    try:
        runner = ClientRunner(spec, data)
    except Exception as exc:  # noqa: BLE001 - the parent turns it into a one-line failure
        conn.send_bytes(pack({"type": "error", "message": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}))
        return
    conn.send_bytes(pack({"type": "ready", "pid": os.getpid()}))
    while True:
        try:
            frame = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if unpack(frame)[0]["type"] == "stop":
            return
        reply = runner.handle(frame)
        if reply is not None:
            conn.send_bytes(reply)


@dataclass
class PoolWorker:
    """The parent's view of one worker process (mirrored into status.json as a worker entry)."""

    name: str
    process: Any
    conn: multiprocessing.connection.Connection
    round: int = 0
    clients: int = 0
    samples: int = 0
    compute_s: float = 0.0
    peak_rss_mb: float = 0.0
    exit_code: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int | None:
        return self.process.pid


class LocalPool:
    """``size`` forked workers on this machine."""

    engine = "local"

    def __init__(self, spec: RunnerSpec, size: int, data: tuple[Any, np.ndarray] | None = None,
                 start_timeout: float = 300.0, task_timeout: float = 600.0) -> None:
        if size < 1:
            raise ValueError(f"the pool needs at least one worker, got {size}")
        self.task_timeout = task_timeout
        context = multiprocessing.get_context("fork")
        self.workers: list[PoolWorker] = []
        for index in range(size):
            parent, child = context.Pipe(duplex=True)
            process = context.Process(target=_serve, args=(child, spec, data), name=f"fedmist-pool-{index}",
                                      daemon=True)
            process.start()
            child.close()
            self.workers.append(PoolWorker(f"pool-{index}", process, parent))
        for worker in self.workers:
            if not worker.conn.poll(start_timeout):
                raise SimulationError(f"{worker.name} did not start within {start_timeout:g} s")
            self._reply(worker)

    def _reply(self, worker: PoolWorker) -> Result:
        try:
            header, body = unpack(worker.conn.recv_bytes())
        except (EOFError, OSError):
            worker.exit_code = worker.process.exitcode
            raise SimulationError(f"{worker.name} (pid {worker.pid}) exited (code {worker.process.exitcode})") from None
        except PoolProtocolError as exc:
            raise SimulationError(f"{worker.name}: {exc}") from None
        if header["type"] == "error":
            raise SimulationError(f"{worker.name}: {header.get('message', 'failed')}")
        return header, body

    def _dispatch(self, worker: PoolWorker, round: int, global_frame: bytes, task: Task) -> None:
        if worker.round != round:
            worker.conn.send_bytes(global_frame)
            worker.round = round
        header, indices = task
        worker.conn.send_bytes(pack(header, indices))

    def run_round(self, round: int, global_bytes: bytes | bytearray | memoryview,
                  tasks: Iterable[Task]) -> Iterator[Result]:
        """Train every task's client, at most one per worker at a time; yield results as they arrive."""
        global_frame = pack({"type": "global", "round": round}, global_bytes)
        queue = deque(tasks)
        busy: dict[Any, PoolWorker] = {}
        for worker in self.workers:
            if not queue:
                break
            self._dispatch(worker, round, global_frame, queue.popleft())
            busy[worker.conn] = worker
        while busy:
            ready = multiprocessing.connection.wait(list(busy), self.task_timeout)
            if not ready:
                raise SimulationError(f"no pool worker answered within {self.task_timeout:g} s")
            for conn in ready:
                worker = busy.pop(conn)
                header, body = self._reply(worker)
                worker.clients += 1
                worker.samples += int(header["num_samples"])
                worker.compute_s += float(header["compute_s"])
                if queue:  # the next client starts before the parent folds this result in
                    self._dispatch(worker, round, global_frame, queue.popleft())
                    busy[conn] = worker
                yield header, body
        for worker in self.workers:
            worker.peak_rss_mb = max(worker.peak_rss_mb, peak_rss_mb(worker.pid or 0))

    def close(self) -> None:
        """Stop every worker (a stop frame, then terminate what is still alive after 5 s)."""
        for worker in self.workers:
            try:
                worker.conn.send_bytes(pack({"type": "stop"}))
            except (OSError, ValueError):
                pass
        for worker in self.workers:
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(5)
            worker.exit_code = worker.process.exitcode
            worker.conn.close()
