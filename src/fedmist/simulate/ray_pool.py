"""The simulation pool on a Ray cluster: the same runner as the local pool, as Ray actors (``--ray-address``).

Ray is the engine: it places the actors on the cluster's nodes, moves their arguments and results, and fails
them; fedmist adds no scheduler of its own -- it keeps one client in flight per actor, like the local pool.
What crosses Ray is plain data only (the runner spec as JSON text, the pool's frames as ``bytes``), and the
round's global model is put in Ray's object store once per round, not once per client. Imported only when a
simulation names a cluster, so ``import fedmist`` never loads Ray. Every node needs fedmist installed (``pip
install 'fedmist[ray]'``) and the dataset at the same path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # no GPUs asked for: keep Ray's FutureWarning off
import ray  # noqa: E402

from fedmist.simulate.client import ClientRunner, RunnerSpec  # noqa: E402
from fedmist.simulate.messages import pack, unpack  # noqa: E402
from fedmist.simulate.pool import PoolWorker, Result, SimulationError, Task  # noqa: E402


class _Actor:
    """One Ray actor: a :class:`ClientRunner`, answering ``fit`` frames (data in, data out)."""

    def __init__(self, spec_json: str) -> None:
        self.runner = ClientRunner(RunnerSpec.from_json(spec_json))
        self.pid = os.getpid()

    def info(self) -> tuple[int, str]:
        return self.pid, ray.get_runtime_context().get_node_id()

    def peak_rss_mb(self) -> float:
        from fedmist.simulate.pool import peak_rss_mb

        return peak_rss_mb(self.pid)

    def fit(self, round: int, global_frame: bytes, task_frame: bytes) -> bytes:
        if self.runner.round != round:
            self.runner.handle(global_frame)
        return self.runner.handle(task_frame) or pack({"type": "error", "message": "no reply"})


class _ActorHandle:
    """What the status needs of a worker, for an actor (no local process object)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.exitcode: int | None = None


class RayPool:
    """``size`` actors (default: one per CPU of the cluster), each holding one model and one copy of the data."""

    engine = "ray"

    def __init__(self, spec: RunnerSpec, size: int | None, address: str, task_timeout: float = 600.0) -> None:
        try:
            ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                     logging_level="WARNING")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SimulationError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
        self.task_timeout = task_timeout
        cpus = int(ray.cluster_resources().get("CPU", 1))
        count = size or max(1, cpus)
        actor = ray.remote(num_cpus=1)(_Actor)
        self.actors = [actor.remote(spec.to_json()) for _ in range(count)]
        try:
            infos = ray.get([a.info.remote() for a in self.actors], timeout=300)
        except Exception as exc:  # noqa: BLE001 - an actor that cannot start: its reason, in one line
            self.close()
            raise SimulationError(f"Ray actors did not start: {type(exc).__name__}: "
                                  f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}") from None
        self.nodes = sorted({node for _, node in infos})
        self.workers = [PoolWorker(f"ray-{i}", _ActorHandle(pid), None, extra={"node": node})  # type: ignore[arg-type]
                        for i, (pid, node) in enumerate(infos)]

    def run_round(self, round: int, global_bytes: bytes | bytearray | memoryview,
                  tasks: Iterable[Task]) -> Iterator[Result]:
        global_ref = ray.put(pack({"type": "global", "round": round}, global_bytes))
        queue = list(tasks)[::-1]
        running: dict[Any, int] = {}

        def submit(index: int) -> None:
            header, indices = queue.pop()
            running[self.actors[index].fit.remote(round, global_ref, pack(header, indices))] = index

        for index in range(len(self.actors)):
            if queue:
                submit(index)
        while running:
            done, _ = ray.wait(list(running), num_returns=1, timeout=self.task_timeout)
            if not done:
                raise SimulationError(f"no Ray actor answered within {self.task_timeout:g} s")
            index = running.pop(done[0])
            try:
                header, body = unpack(ray.get(done[0]))
            except ray.exceptions.RayError as exc:
                raise SimulationError(f"ray-{index}: {str(exc).strip().splitlines()[0]}") from None
            if header["type"] == "error":
                raise SimulationError(f"ray-{index}: {header.get('message', 'failed')}")
            worker = self.workers[index]
            worker.clients += 1
            worker.samples += int(header["num_samples"])
            worker.compute_s += float(header["compute_s"])
            if queue:
                submit(index)
            yield header, body
        for worker, rss in zip(self.workers, ray.get([a.peak_rss_mb.remote() for a in self.actors])):
            worker.peak_rss_mb = max(worker.peak_rss_mb, float(rss))

    def close(self) -> None:
        """End the actors and leave the cluster (the cluster itself keeps running)."""
        for actor in self.actors:
            ray.kill(actor)
        for worker in getattr(self, "workers", []):
            worker.exit_code = 0
        ray.shutdown()
