"""Live progress for ``fedmist run``: a rich table per worker on a terminal, plain lines elsewhere (CI, logs).

The view only reads the launcher's process states and the workers' reports; it never drives the job.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from fedmist.launch.status import ProcessState
from fedmist.launch.uplink import slowest_text, upload_text

PLAIN_EVERY_S = 2.0  # plain lines: a new stage at once, a moving figure (rate, ETA) at most this often


def _stage_text(report: dict[str, Any]) -> str:
    """Human words for where a worker is: 'training epoch 3/10', 'uploading 12000/25000'."""
    stage = report.get("stage", "starting")
    if stage == "training" and "epoch" in report:
        text = f"training epoch {report['epoch']}/{report.get('epochs', '?')}"
        last = (report.get("history") or [{}])[-1]
        if "test_accuracy" in last:
            text += f"  acc {last['test_accuracy']:.4f}"
        if "test_mAP50" in last:  # detection: the cloud's training loss and validation mAP of the last epoch
            text += f"  loss {last.get('loss', float('nan')):.3f}  mAP50 {last['test_mAP50']:.3f}"
        return text
    if stage == "training" and "round" in report:
        slowest = slowest_text((report.get("history") or [{}])[-1])
        return f"round {report['round']}/{report.get('rounds', '?')}" + (f"  {slowest}" if slowest else "")
    if stage in ("extracting", "uploading") and "samples" in report:
        upload = f"  {upload_text(report['upload'])}" if report.get("upload") else ""
        return f"{stage} {report.get('received', 0)}/{report['samples']}{upload}"
    if stage == "receiving" and report.get("workers"):
        done = sum(1 for w in report["workers"].values() if w.get("phase") == "Uploaded")
        return f"receiving features ({done}/{len(report['workers'])} edges done)"
    return str(stage)


def _epsilon_text(name: str, processes: dict[str, ProcessState], reports: dict[str, dict[str, Any]]) -> str:
    """The epsilon a worker works under: an edge's own (as its records declare it to the aggregator), the
    aggregator's as the job's floor; "" while unknown."""
    state = processes[name]
    if state.role == "aggregator":
        floor = (reports.get(name, {}).get("privacy") or {}).get("epsilon_floor", reports.get(name, {}).get("epsilon"))
        return "" if floor is None else f"{floor} (floor)"
    aggregator = next((n for n, p in processes.items() if p.role == "aggregator"), None)
    seen = reports.get(aggregator, {}).get("workers", {}).get(name, {}) if aggregator else {}
    return str(seen.get("epsilon") or "")


def _mb(n: float | None) -> str:
    return f"{(n or 0) / 1e6:.2f} MB"


class ProgressView:
    """Context manager drawing progress; ``update`` is called on every launcher poll."""

    def __init__(self, job: str, enabled: bool = True, console: Console | None = None) -> None:
        self.job = job
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self._live: Live | None = None
        self._last_lines: dict[str, str] = {}
        self._printed_at: dict[str, float] = {}

    def __enter__(self) -> "ProgressView":
        if self.enabled and self.console.is_terminal:
            self._live = Live(console=self.console, refresh_per_second=8, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def update(self, processes: dict[str, ProcessState], reports: dict[str, dict[str, Any]]) -> None:
        if not self.enabled:
            return
        if self._live is not None:
            self._live.update(self._table(processes, reports))
            return
        for name, state in processes.items():
            line = self._line(state, reports.get(name, {}))
            epsilon = _epsilon_text(name, processes, reports)
            if epsilon and state.exit_code is None:
                line += f"  eps {epsilon}"
            last = self._last_lines.get(name, "")
            if last != line and (last.split(" ")[:1] != line.split(" ")[:1]
                                 or time.monotonic() - self._printed_at.get(name, 0.0) >= PLAIN_EVERY_S):
                self._last_lines[name] = line
                self._printed_at[name] = time.monotonic()
                self.console.print(f"[{self.job}] {name}: {line}", highlight=False, markup=False)  # "[job]" is no rich tag

    def _line(self, state: ProcessState, report: dict[str, Any]) -> str:
        restarted = f" (restart {state.restarts})" if state.restarts else ""
        if state.exit_code is not None:
            return ("done" if state.exit_code == 0 else f"exited with code {state.exit_code}") + restarted
        stage = report.get("stage", "starting")
        if stage == "training" and "epoch" in report:
            return _stage_text(report) + restarted
        if stage in ("extracting", "uploading", "reconnecting"):
            return stage + (f" {upload_text(report['upload'])}" if report.get("upload") else "") + restarted
        return _stage_text(report) + restarted

    def _table(self, processes: dict[str, ProcessState], reports: dict[str, dict[str, Any]]) -> Table:
        table = Table(title=f"fedmist job {self.job}", expand=False)
        for column in ("worker", "role", "progress", "epsilon", "up", "down", "compute s", "RSS MB", "pid", "restarts"):
            table.add_column(column)
        for name, state in processes.items():
            report = reports.get(name, {})
            progress = self._line(state, report) if state.exit_code is not None else _stage_text(report)
            table.add_row(name, state.role, progress, _epsilon_text(name, processes, reports) or "-",
                          _mb(report.get("bytes_up")), _mb(report.get("bytes_down")),
                          f"{report.get('compute_s', 0):.2f}", f"{report.get('peak_rss_mb', state.peak_rss_mb)}",
                          str(state.pid or "-"), str(state.restarts))
        return table

    def summary(self, phase: str, status: dict[str, Any], workdir: Path) -> None:
        """One closing block: phase, the headline metrics, and where the files are."""
        metrics = status.get("metrics", {})
        parts = [f"job {self.job}: {phase}"]
        for key in ("accuracy", "loss", "mAP50", "mAP50-95"):
            if isinstance(metrics.get(key), (int, float)):
                parts.append(f"{key} {metrics[key]:.4f}")
        parts.append(f"in {status.get('elapsed_s', 0):.1f} s")
        self.console.print(", ".join(parts), highlight=False)
        privacy = metrics.get("privacy") or {}
        if privacy.get("edges"):
            edges = ", ".join(f"{name} {figures['epsilon_per_feature']}" for name, figures in privacy["edges"].items())
            self.console.print(f"epsilon per feature: floor {privacy.get('epsilon_floor')}; {edges}", highlight=False)
        if phase != "Succeeded":
            for condition in status.get("conditions", [])[-1:]:
                self.console.print(f"reason: {condition['message']}", highlight=False)
        self.console.print(f"status: {workdir / 'status.json'}  logs: {workdir / 'logs'}", highlight=False)
