"""``status.json``: the CR-style status of a job (DESIGN section 7), built from the workers' own reports.

Pure functions over plain dicts, so the local launcher and the Kubernetes operator compute the same status
from the same reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
STOPPED = "Stopped"  # a worker the launcher ended because the job was already decided


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ProcessState:
    """What the launcher knows of one worker process (the reports say the rest)."""

    name: str
    role: str
    pid: int | None = None
    exit_code: int | None = None
    restarts: int = 0
    peak_rss_mb: float = 0.0
    memory_limit_bytes: int | None = None
    # Set by launchers that have no PID to show (a Kubernetes pod that is running or has run).
    started: bool = False
    # Ended by the launcher because the job was over, not by a failure of its own.
    stopped: bool = False

    @property
    def is_started(self) -> bool:
        return self.pid is not None or self.started


@dataclass
class JobStatus:
    """The job-level state machine; ``to_dict`` renders the status document."""

    job: str
    phase: str = PENDING
    start_time: str = field(default_factory=now_iso)
    completion_time: str | None = None
    conditions: list[dict[str, str]] = field(default_factory=list)
    started_monotonic: float = field(default_factory=time.monotonic)

    def transition(self, phase: str, reason: str, message: str) -> None:
        """Move to ``phase``; the latest condition of each type is updated in place, not appended again."""
        if phase == self.phase and self.conditions and self.conditions[-1]["message"] == message:
            return
        self.phase = phase
        condition = {"type": phase, "status": "True", "reason": reason, "message": message,
                     "lastTransitionTime": now_iso()}
        self.conditions = [c for c in self.conditions if c["type"] != phase] + [condition]
        if phase in (SUCCEEDED, FAILED):
            self.completion_time = now_iso()

    def to_dict(self, processes: list[ProcessState], reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
        trainers = [p for p in processes if p.role == "trainer"]
        aggregator = next((p for p in processes if p.role == "aggregator"), None)
        agg_report = reports.get(aggregator.name, {}) if aggregator else {}
        return {
            "job": self.job,
            "phase": self.phase,
            "conditions": self.conditions,
            "startTime": self.start_time,
            "completionTime": self.completion_time,
            "elapsed_s": round(time.monotonic() - self.started_monotonic, 3),
            "active": sum(1 for p in processes if p.is_started and p.exit_code is None),
            "succeeded": sum(1 for p in processes if p.exit_code == 0),
            "failed": sum(1 for p in processes if p.exit_code not in (None, 0) and not p.stopped),
            "progress": _progress(agg_report),
            "aggregator": _worker_entry(aggregator, agg_report, {}) if aggregator else {},
            "workers": {
                p.name: {**_worker_entry(p, reports.get(p.name, {}), agg_report.get("workers", {}).get(p.name, {})),
                         **_edge_privacy(p.name, agg_report)}
                for p in trainers
            },
            "metrics": _metrics(agg_report),
        }


def _progress(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("stage", "round", "rounds", "epoch", "epochs")
    progress = {k: report[k] for k in keys if k in report}
    last = (report.get("history") or [{}])[-1]
    if isinstance(last, dict) and last.get("slowest_link"):  # FedAvg family: the last round's slowest link
        progress["slowest_link"] = last["slowest_link"]
    return progress


def _worker_entry(process: ProcessState, report: dict[str, Any], seen_by_aggregator: dict[str, Any]) -> dict[str, Any]:
    """One worker's line: its own report first, the aggregator's view where the worker said nothing."""
    peak = max(process.peak_rss_mb, float(report.get("peak_rss_mb") or 0.0))
    limit_mb = round(process.memory_limit_bytes / 2**20, 1) if process.memory_limit_bytes else None
    entry = {
        "phase": _worker_phase(process, report),
        "stage": report.get("stage", seen_by_aggregator.get("phase", "")),
        "samples": report.get("samples", seen_by_aggregator.get("samples", 0)),
        "bytes_up": report.get("bytes_up", seen_by_aggregator.get("bytes_up", 0)),
        "bytes_down": report.get("bytes_down", seen_by_aggregator.get("bytes_down", 0)),
        "compute_s": report.get("compute_s", seen_by_aggregator.get("compute_s", 0.0)),
        "peak_rss_mb": peak,
        "memory_limit_mb": limit_mb,
        "over_memory_limit": bool(limit_mb and peak > limit_mb),
        "restarts": process.restarts,
        "pid": process.pid,
        "exit_code": process.exit_code,
    }
    # reconnects seen by the aggregator / made by the worker; the device a YOLO worker trains on
    for key in ("connections", "sessions", "device"):
        value = seen_by_aggregator.get(key, report.get(key))
        if value is not None:
            entry[key] = value
    if report.get("error"):
        entry["error"] = report["error"]
    if report.get("upload"):  # rate, bytes and ETA on the edge's link (launch/uplink.py)
        entry["upload"] = report["upload"]
    return entry


def _edge_privacy(name: str, agg_report: dict[str, Any]) -> dict[str, Any]:
    """The noise an edge applied, as the aggregator saw it in the edge's records (each edge picks the stricter of
    its own epsilon and the job's floor), and that edge's privacy figures once the aggregator computed them."""
    seen = agg_report.get("workers", {}).get(name, {})
    entry: dict[str, Any] = {}
    if seen.get("epsilon"):
        entry["epsilon"] = seen["epsilon"]
        entry["label_epsilon"] = seen.get("label_epsilon", "")
    figures = (agg_report.get("privacy") or {}).get("edges", {}).get(name)
    if figures is not None:
        entry["privacy"] = figures
    return entry


def _worker_phase(process: ProcessState, report: dict[str, Any]) -> str:
    if process.stopped:
        return STOPPED
    if process.exit_code is None:
        return RUNNING if process.is_started else PENDING
    return SUCCEEDED if process.exit_code == 0 else FAILED


def _metrics(report: dict[str, Any]) -> dict[str, Any]:
    metrics = dict(report.get("metrics", {}))
    if "history" in report:
        metrics["history"] = report["history"]
    if "privacy" in report:
        metrics["privacy"] = report["privacy"]
    return metrics
