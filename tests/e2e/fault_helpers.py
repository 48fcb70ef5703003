"""Helpers of the fault-injection suite: write small real jobs, run the real CLI in the background, watch its
status files, and kill its workers by PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from e2e_helpers import REPO

AGGREGATOR = "cloud"  # the aggregator's nodeName in the jobs written here, hence its worker name


def _container(env: dict[str, str]) -> dict[str, Any]:
    return {"name": "worker", "image": "fedmist/worker:0.1", "env": [{"name": k, "value": v} for k, v in env.items()]}


def write_job(path: Path, name: str, data: Path, edges: list[str], agg_env: dict[str, str],
              trainer_env: dict[str, str], model_path: Path, pretrained: Path | None = None) -> Path:
    """A Sedna FederatedLearningJob over IDX splits under ``data`` (one Dataset per edge), absolute paths."""
    docs: list[dict[str, Any]] = [
        {"apiVersion": "sedna.io/v1alpha1", "kind": "Dataset", "metadata": {"name": f"ds-{edge}"},
         "spec": {"url": str(data / edge), "format": "idx", "nodeName": edge}} for edge in edges]
    docs.append({"apiVersion": "sedna.io/v1alpha1", "kind": "Model", "metadata": {"name": "out"},
                 "spec": {"url": str(model_path), "format": "pth"}})
    spec: dict[str, Any] = {
        "aggregationWorker": {"model": {"name": "out"}, "template": {"spec": {
            "nodeName": "cloud", "containers": [_container(agg_env)]}}},
        "trainingWorkers": [{"dataset": {"name": f"ds-{edge}"}, "template": {"spec": {
            "nodeName": edge, "containers": [_container(trainer_env)]}}} for edge in edges],
    }
    if pretrained is not None:
        docs.append({"apiVersion": "sedna.io/v1alpha1", "kind": "Model", "metadata": {"name": "pre"},
                     "spec": {"url": str(pretrained), "format": "pth"}})
        spec["pretrainedModel"] = {"name": "pre"}
    docs.append({"apiVersion": "sedna.io/v1alpha1", "kind": "FederatedLearningJob", "metadata": {"name": name},
                 "spec": spec})
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


class JobRun:
    """``fedmist run`` as a background process, with its work folder's status and reports readable."""

    def __init__(self, job: Path, workdir: Path, *extra: str, env: dict[str, str] | None = None,
                 timeout: float = 300) -> None:
        self.workdir = workdir
        self.timeout = timeout
        command = [sys.executable, "-m", "fedmist", "run", "-f", str(job), "--workdir", str(workdir),
                   "--no-progress", "--timeout", str(int(timeout)), *extra]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                     env={**os.environ, **(env or {})})
        self.started = time.monotonic()
        self.stdout = self.stderr = ""

    def status(self) -> dict[str, Any]:
        return _read_json(self.workdir / "status.json")

    def report(self, worker: str) -> dict[str, Any]:
        return _read_json(self.workdir / "reports" / f"{worker}.json")

    def wait_until(self, condition: Callable[[], Any], what: str, timeout: float = 240.0) -> Any:
        """Poll ``condition`` every 20 ms until it returns something truthy; fail naming ``what``."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = condition()
            if value:
                return value
            if self.proc.poll() is not None:
                self.finish()
                raise AssertionError(f"job ended (code {self.proc.returncode}) before {what}: {self.stderr[-1500:]}")
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; status {self.status().get('progress')}")

    def kill(self, worker: str) -> int:
        """SIGKILL one worker process (aggregator or trainer) by the PID the launcher put in status.json."""
        status = self.status()
        entry = status["aggregator"] if worker == AGGREGATOR else status["workers"][worker]
        pid = int(entry["pid"])
        os.kill(pid, signal.SIGKILL)
        return pid

    def finish(self) -> int:
        try:
            out, err = self.proc.communicate(timeout=max(5.0, self.timeout + 30 - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self.stdout, self.stderr = self.stdout + (out or ""), self.stderr + (err or "")
        return self.proc.returncode

    def log(self, worker: str) -> str:
        try:
            return (self.workdir / "logs" / f"{worker}.log").read_text(errors="replace")
        except OSError:
            return ""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
