"""Run a whole job on this machine: the aggregator and one OS process per training worker (DESIGN section 7).

Each worker runs the entrypoint a container runs (``fedmist worker aggregate|train`` with the env contract),
so what passes here passes in a pod. By default it is forked from a zygote that imported torch once
(:mod:`fedmist.launch.zygote`: seconds less start-up per job); ``prefork=False`` (``fedmist run
--no-prefork``) starts each one as a fresh ``python -m fedmist worker ...`` instead, exactly as a container. The launcher only watches: it polls the
processes and the workers' report files, keeps ``status.json`` current, draws progress, and ends the job.
It only ever signals processes it started, by PID.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from fedmist.atomic import write_json_atomic
from fedmist.imports import python_path_env
from fedmist.launch.netlab.hosts import Netlab
from fedmist.launch.netlab.nsenter import NETNS_ENV
from fedmist.launch.progress import ProgressView
from fedmist.launch.spawn import Zygote, ZygoteChild
from fedmist.launch.status import FAILED, RUNNING, SUCCEEDED, JobStatus, ProcessState
from fedmist.launch.uplink import UplinkMeter
from fedmist.spec.job import ResolvedJob, WorkerSpec
from fedmist.spec.params import DEFAULT_AGG_PORT, PARSERS
from fedmist.transport.tls import TlsFiles, make_job_pki, write_tls_files
from fedmist.worker.main import family_of

POLL_S = 0.1
GRACE_S = 5.0
BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
CONFIG_ERROR_EXIT = 2  # a worker's "misconfigured" exit: restarting it cannot help
RESTARTING_POLICIES = frozenset({"OnFailure", "Always"})
# Debug/fault-injection overrides (RELIABILITY.md): bind the aggregator to a fixed port, and point the trainers
# at another port (a fault proxy in front of the aggregator). Not for production jobs; not job parameters.
AGG_PORT_ENV = "FEDMIST_AGG_PORT"
NETLAB_AGG_PORT = DEFAULT_AGG_PORT  # the aggregator's port on its own network host (fedmist run --topology)
TRAINER_AGG_PORT_ENV = "FEDMIST_TRAINER_AGG_PORT"


@dataclass
class RunOptions:
    workdir: Path
    timeout_s: float = 24 * 3600.0
    progress: bool = True
    bind_host: str = "127.0.0.1"
    tls: bool = True
    max_restarts: int = 3
    # Folders put first on the workers' PYTHONPATH, so user code named by import path imports there as it
    # did in the launcher (the job file's folder; the packages of objects given to fedmist.Job).
    python_path: tuple[str, ...] = ()
    agg_port: int | None = None  # default: a free port (or $FEDMIST_AGG_PORT)
    trainer_agg_port: int | None = None  # where trainers dial (default: agg_port, or $FEDMIST_TRAINER_AGG_PORT)
    # Fork workers from a zygote with torch preloaded (launch/zygote.py): True starts one, a Zygote is one the
    # caller started earlier (the job then owns and closes it); False starts each worker as a fresh interpreter.
    prefork: bool | Zygote = True
    # Workers on their own network hosts behind emulated links (fedmist run --topology; launch/netlab): the
    # aggregator binds the cloud host's address, each edge enters its namespace and dials its link's relay.
    network: Netlab | None = None


def _port_override(name: str) -> int | None:
    """A port from a debug env override, or None when unset; a bad value is a one-line error."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"{name} must be a TCP port number, got {raw!r}")
    return int(raw)


class _Terminated(Exception):
    """Raised in the launcher's main loop by SIGTERM, so its ``finally`` stops the workers it started."""


def _raise_on_sigterm() -> Any:
    """Turn SIGTERM into :class:`_Terminated` while a job runs (Python's default would exit at once and leave
    the worker processes running). Only the main thread may set handlers; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: object) -> None:
        raise _Terminated()

    return signal.signal(signal.SIGTERM, handler)


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (the aggregator binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def thread_budget(trainers: int, cores: int | None = None) -> tuple[int, int]:
    """Torch threads for (aggregator, each trainer): trainers extract side by side while the aggregator
    waits, and the aggregator trains alone afterwards, so neither phase oversubscribes the cores."""
    cores = cores or os.cpu_count() or 1
    return cores, max(1, cores // max(1, trainers))


class TlsSecretError(ValueError):
    """The job's TLS Secret does not load; one line naming the job file and the reason (exit 2)."""


class LocalJob:
    """One job's processes, reports and status on this machine."""

    def __init__(self, job: ResolvedJob, options: RunOptions) -> None:
        self.job = job
        self.options = options
        self.workdir = options.workdir
        self.status = JobStatus(job.name)
        secret = job.channel_secret
        self.token = (secret.token if secret else "") or secrets.token_urlsafe(32)
        if options.network is not None:  # a fresh namespace: any port is free there, and it is not ours to probe
            options.bind_host = options.network.agg_host
        self.port = (options.agg_port or _port_override(AGG_PORT_ENV)
                     or (NETLAB_AGG_PORT if options.network else free_port(options.bind_host)))
        self.trainer_port = options.trainer_agg_port or _port_override(TRAINER_AGG_PORT_ENV) or self.port
        self.workers: list[WorkerSpec] = [job.aggregator, *job.trainers]
        self.processes = {w.name: ProcessState(w.name, w.role, memory_limit_bytes=w.memory_limit_bytes)
                          for w in self.workers}
        self._popen: dict[str, subprocess.Popen | ZygoteChild] = {}
        self._zygote: Zygote | None = None
        self._psutil: dict[str, psutil.Process] = {}
        self.reports: dict[str, dict[str, Any]] = {}
        self._tls: TlsFiles | None = None
        self._specs = {w.name: w for w in self.workers}
        self._restart_at: dict[str, float] = {}
        self._lost: set[str] = set()
        self._family = family_of(job.params_for(job.aggregator).aggregation_algorithm or "")
        self._config_error = False  # the job failed because a worker exited 2 (bad configuration)
        self._uplinks = UplinkMeter()

    # -- paths -------------------------------------------------------------------------------------------------
    def report_path(self, name: str) -> Path:
        return self.workdir / "reports" / f"{name}.json"

    def log_path(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def run(self) -> int:
        """Run to the end; return 0 only when the job succeeded."""
        for sub in ("logs", "reports", "state"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        for stale in (self.workdir / "reports").glob("*.json"):
            stale.unlink()
        self._tls = self._tls_files()
        if isinstance(self.options.prefork, Zygote):
            self._zygote = self.options.prefork
        elif self.options.prefork and hasattr(os, "fork"):
            self._zygote = Zygote(self.workdir / "state" / "zygote.log")
        view = ProgressView(self.job.name, enabled=self.options.progress)
        deadline = time.monotonic() + self.options.timeout_s
        previous_handler = _raise_on_sigterm()
        try:
            if self.options.network is not None:
                self.options.network.start(self.port)
            self._start_all()
            forked = all(isinstance(p, ZygoteChild) for p in self._popen.values())
            self.status.transition(RUNNING, "WorkersStarted", f"{len(self.workers)} worker processes started"
                                   + (" (forked from a zygote with torch preloaded)" if forked else ""))
            with view:
                while not self._finished():
                    if time.monotonic() > deadline:
                        self.status.transition(FAILED, "Timeout", f"job exceeded {self.options.timeout_s:g} s")
                        break
                    self._poll()
                    self._restart_due()
                    view.update(self.processes, self.reports)
                    self._write_status()
                    time.sleep(POLL_S)
                self._poll()
                view.update(self.processes, self.reports)
        except KeyboardInterrupt:
            self.status.transition(FAILED, "Interrupted", "interrupted by the user")
        except _Terminated:
            self.status.transition(FAILED, "Terminated", "the launcher received SIGTERM; workers were stopped")
        finally:
            self._stop_all()
            if self._zygote is not None:
                self._zygote.close()
            self._poll()
            self._write_status()
            if previous_handler is not None:
                signal.signal(signal.SIGTERM, previous_handler)
        view.summary(self.status.phase, self._status_dict(), self.workdir)
        if self.status.phase == SUCCEEDED:
            return 0
        return CONFIG_ERROR_EXIT if self._config_error else 1

    def _tls_files(self) -> TlsFiles | None:
        """The Secret's certificate when the job names one (``transmitter.ws.credentialName``), else a fresh
        per-job CA and server certificate (or none with ``--no-tls``)."""
        secret = self.job.channel_secret
        if secret is not None and secret.has_tls:
            try:
                return write_tls_files(self.workdir / "tls", secret.cert_pem, secret.key_pem, secret.ca_pem)
            except ValueError as exc:
                raise TlsSecretError(f"{self.job.job_file}: Secret of spec.transmitter.ws.credentialName: {exc}") from None
        if not self.options.tls:
            return None
        hosts = self.options.network.server_hosts() if self.options.network else []
        return make_job_pki(self.workdir / "tls", self.job.name, [self.options.bind_host, "localhost", *hosts])

    def _start_all(self) -> None:
        for worker in self.workers:
            self._start(worker)

    def _start(self, worker: WorkerSpec) -> None:
        agg_threads, trainer_threads = thread_budget(len(self.job.trainers))
        threads = agg_threads if worker.role == "aggregator" else trainer_threads
        argv = ["worker", "aggregate" if worker.role == "aggregator" else "train", *worker.args]
        env = self._env(worker, threads)
        proc = self._zygote.spawn(argv, env, self.log_path(worker.name), os.getcwd()) if self._zygote else None
        if proc is None:
            with open(self.log_path(worker.name), "ab") as log:
                proc = subprocess.Popen([sys.executable, "-m", "fedmist", *argv], env=env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=os.getcwd())
        self._popen[worker.name] = proc
        state = self.processes[worker.name]
        state.pid, state.exit_code = proc.pid, None
        try:
            self._psutil[worker.name] = psutil.Process(proc.pid)
        except psutil.Error:
            pass

    def _restart_due(self) -> None:
        now = time.monotonic()
        for name, when in list(self._restart_at.items()):
            if when <= now:
                del self._restart_at[name]
                self.processes[name].restarts += 1
                self._start(self._specs[name])

    def _env(self, worker: WorkerSpec, threads: int) -> dict[str, str]:
        """The worker's environment: this shell's (PATH, HOME...) minus anything that would read as a job
        parameter (a stray ``EPOCHS`` or ``SEED`` in the user's shell must not change the job), plus the
        env contract and the template's env."""
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in PARSERS and k not in (AGG_PORT_ENV, TRAINER_AGG_PORT_ENV)}
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning on shared cores
        dial = self.port if worker.role == "aggregator" else self.trainer_port
        network = self.options.network
        agg_ip = network.dial_host(worker.name) if network and worker.role != "aggregator" else self.options.bind_host
        env.update(self.job.worker_env(worker, agg_ip=agg_ip, agg_port=dial))
        if network is not None:
            env[NETNS_ENV] = network.netns_of(worker.name)
        env.update({
            "AGG_BIND_PORT": str(self.port),
            "FEDMIST_TOKEN": self.token,
            "FEDMIST_BIND_HOST": self.options.bind_host,
            "FEDMIST_STATUS_FILE": str(self.report_path(worker.name)),
            "FEDMIST_STATE_DIR": str(self.workdir / "state" / worker.name),
            "FEDMIST_THREADS": str(threads),
            "OMP_NUM_THREADS": str(threads),
            "PYTHONUNBUFFERED": "1",
        })
        if self.options.python_path:
            env["PYTHONPATH"] = python_path_env(self.options.python_path, env)
        if self._tls is not None and worker.role == "aggregator":
            env.update(FEDMIST_TLS_CERT=str(self._tls.cert), FEDMIST_TLS_KEY=str(self._tls.key))
        elif self._tls is not None:
            env["FEDMIST_TLS_CA"] = str(self._tls.ca)
        return env

    def _poll(self) -> None:
        for name, proc in self._popen.items():
            state = self.processes[name]
            if state.exit_code is None:
                state.exit_code = proc.poll()
                ps = self._psutil.get(name)
                if ps is not None and state.exit_code is None:
                    try:
                        state.peak_rss_mb = max(state.peak_rss_mb, round(ps.memory_info().rss / 2**20, 1))
                    except psutil.Error:
                        pass
            try:
                self.reports[name] = json.loads(self.report_path(name).read_text())
            except (OSError, ValueError):
                pass
        self._uplinks.observe(self.job.aggregator.name, self.reports)

    def _finished(self) -> bool:
        """Decide the job's fate from the processes; True once it is decided.

        A failed worker is restarted per its template's ``restartPolicy`` (OnFailure by default) with
        exponential backoff, up to ``max_restarts``; a configuration error (exit 2) never is: it fails the job at
        once (``run`` then returns 2), since no retry or quorum can get past it. After that, a FedAvg-family
        trainer is left to the aggregator's quorum; anything else fails the job, naming it."""
        aggregator = self.processes[self.job.aggregator.name]
        for state in self.processes.values():
            if state.exit_code in (None, 0) or state.name in self._restart_at or state.name in self._lost:
                continue
            reason = self.reports.get(state.name, {}).get("error") or self._last_log_line(state.name)
            what = f"worker {state.name} ({state.role}) exited with code {state.exit_code}: {reason}"
            if self._may_restart(state):
                delay = min(MAX_BACKOFF_S, BACKOFF_S * 2**state.restarts)
                self._restart_at[state.name] = time.monotonic() + delay
                self.status.transition(RUNNING, "WorkerRestarting", f"{what}; restart {state.restarts + 1}/"
                                       f"{self.options.max_restarts} in {delay:g} s")
                continue
            if state.exit_code == CONFIG_ERROR_EXIT:  # the same error awaits every retry and every quorum round
                self._config_error = True
            elif state.role == "trainer" and self._family == "rounds" and aggregator.exit_code is None:
                self._lost.add(state.name)
                self.status.transition(RUNNING, "WorkerLost", f"{what}; rounds go on with the quorum")
                continue
            if state.exit_code != CONFIG_ERROR_EXIT and 0 < self.options.max_restarts <= state.restarts:
                self.status.transition(FAILED, "RestartLimitReached", f"{what}; gave up after {state.restarts} "
                                       f"restarts (--max-restarts {self.options.max_restarts})")
            else:
                self.status.transition(FAILED, "WorkerFailed", what)
            return True
        if aggregator.exit_code == 0:
            self.status.transition(SUCCEEDED, "JobCompleted", "the aggregator finished and saved the model")
            return True
        return False

    def _may_restart(self, state: ProcessState) -> bool:
        policy = self._specs[state.name].restart_policy or "OnFailure"
        return (policy in RESTARTING_POLICIES and state.exit_code != CONFIG_ERROR_EXIT
                and state.restarts < self.options.max_restarts)

    def _stop_all(self) -> None:
        """SIGTERM every still-running process we started, then SIGKILL after a grace period."""
        self._restart_at.clear()
        if self.status.phase == SUCCEEDED:  # trainers got STOP from the aggregator: let them exit on their own
            end = time.monotonic() + GRACE_S
            for proc in self._popen.values():
                try:
                    proc.wait(max(0.0, end - time.monotonic()))
                except subprocess.TimeoutExpired:
                    break
        running = {n: p for n, p in self._popen.items() if p.poll() is None}
        for name, proc in running.items():
            self.processes[name].stopped = True
            proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + GRACE_S
        for proc in running.values():
            try:
                proc.wait(max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _last_log_line(self, name: str) -> str:
        try:
            lines = [ln for ln in self.log_path(name).read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return "no log"
        return lines[-1][:300] if lines else "no output"

    def _status_dict(self) -> dict[str, Any]:
        status = self.status.to_dict(list(self.processes.values()), self.reports)
        if self.options.network is not None:
            status["links"] = self.options.network.snapshot()
        return status

    def _write_status(self) -> None:
        write_json_atomic(self.workdir / "status.json", self._status_dict())
