"""A simulation's ``status.json``, in ``fedmist run``'s format (``launch/status.py``), plus a ``simulation`` block.

The aggregator's entry is this process (the job's aggregationWorker name), the workers are the pool's
processes (never the virtual clients: 10,000 entries would say nothing a history does not), and
``metrics.history`` has the round engine's keys, so ``fedmist report`` plots it unchanged.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any

from fedmist.atomic import write_json_atomic
from fedmist.launch.status import FAILED, RUNNING, SUCCEEDED, JobStatus, ProcessState
from fedmist.spec.params import JobParams


def own_peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class SimulationStatus:
    def __init__(self, job: Any, options: Any, params: JobParams) -> None:
        self.job, self.options, self.params = job, options, params
        self.path = Path(options.workdir) / "status.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.state = JobStatus(job.name)
        self.state.transition(RUNNING, "SimulationStarted", f"{options.clients} virtual clients")
        self.report: dict[str, Any] = {"stage": "starting", "algorithm": params.aggregation_algorithm,
                                       "metrics": {}, "history": []}
        self.document: dict[str, Any] = {}
        self.model_path: str | None = None

    def stage(self, pool: Any, stage: str, number: int, rounds: int) -> None:
        self.report.update(stage=stage, round=number, rounds=rounds)
        self.write(pool)

    def round_done(self, pool: Any, number: int, rounds: int, history: list[dict[str, Any]]) -> None:
        last = history[-1]
        self.report.update(stage="evaluating", round=number, rounds=rounds, history=history)
        self.report["metrics"].update(accuracy=last.get("accuracy"), loss=last.get("loss"), rounds=number)
        self.write(pool)

    def save_model(self, model: Any, global_bytes: Any, history: list[dict[str, Any]], strategy: str) -> None:
        """The final global model at the job's output Model url, with the same metadata JSON as a job's."""
        from fedmist.models.local_train import load_numpy_state
        from fedmist.models.weights import save_weights
        from fedmist.wire.arrays import decode_weights

        if not self.job.model_url:
            return
        load_numpy_state(model, decode_weights(global_bytes, check_finite=False))
        path = save_weights(model.state_dict(), self.job.model_url)
        write_json_atomic(Path(f"{path}.json"), {
            "job": self.job.name, "architecture": self.params.model, "algorithm": self.params.aggregation_algorithm,
            "strategy": strategy, "rounds": len(history), "metrics": self.report["metrics"], "history": history,
            "simulation": self._simulation(None), "saved": time.time()})
        self.model_path = str(path)

    def finish(self, pool: Any, phase: str, reason: str, message: str) -> None:
        self.report["stage"] = "done" if phase == SUCCEEDED else "failed"
        self.state.transition(phase if phase in (SUCCEEDED, FAILED) else FAILED, reason, message)

    def _simulation(self, pool: Any) -> dict[str, Any]:
        options = self.options
        out = {"clients": options.clients, "partition": options.scheme,
               "alpha": options.alpha if options.scheme == "dirichlet" else None,
               "shards_per_client": options.shards_per_client if options.scheme == "shards" else None,
               "overrides": dict(options.overrides)}
        if pool is not None:
            out.update(engine=pool.engine, pool_workers=len(pool.workers))
            if getattr(pool, "nodes", None):
                out["ray_nodes"] = len(pool.nodes)
        return out

    def write(self, pool: Any) -> None:
        aggregator = ProcessState(self.job.aggregator.name, "aggregator", pid=os.getpid(),
                                  peak_rss_mb=own_peak_rss_mb(),
                                  exit_code=None if self.state.phase == RUNNING else (0 if self.state.phase == SUCCEEDED
                                                                                       else 1))
        processes = [aggregator]
        reports: dict[str, dict[str, Any]] = {aggregator.name: self.report}
        for worker in pool.workers:
            processes.append(ProcessState(worker.name, "trainer", pid=worker.pid, peak_rss_mb=worker.peak_rss_mb,
                                          exit_code=worker.exit_code, started=True))
            reports[worker.name] = {"stage": "training", "samples": worker.samples,
                                    "compute_s": round(worker.compute_s, 3), "clients": worker.clients}
        document = self.state.to_dict(processes, reports)
        for worker in pool.workers:
            document["workers"][worker.name].update(clients_trained=worker.clients, **worker.extra)
        if self.model_path:
            document["model_path"] = self.model_path
        document["simulation"] = self._simulation(pool)
        self.document = document
        write_json_atomic(self.path, document)
