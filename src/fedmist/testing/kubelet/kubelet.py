"""The process kubelet's loop: a watch thread keeps the Pods, a work thread starts, polls and stops them."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
import urllib.error
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fedmist.testing.kubelet.client import ApiClient
from fedmist.testing.kubelet.podspec import ContainerRun, NodeConfig, NotReady, container_runs, pod_dir

log = logging.getLogger("fedmist.kubelet")
STEP_S = 0.2
STOP_WAIT_S = 10.0  # longest wait for a process to end after SIGTERM before SIGKILL
HEARTBEAT_S = 10.0  # Node status refresh: a real control plane's node lifecycle controller wants one in 40 s


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PodRun:
    """One pod's processes and the container states reported for them."""

    pod: dict[str, Any]
    ip: str
    runs: list[ContainerRun]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    started_at: str = field(default_factory=_now)
    stopping_since: float | None = None
    phase: str = "Pending"  # Running once every init container completed and the containers started

    @property
    def mains(self) -> list[ContainerRun]:
        return [r for r in self.runs if r.kind == "main"]


class Kubelet:
    def __init__(self, client: ApiClient, nodes: Iterable[str], config: NodeConfig) -> None:
        self.client = client
        self.nodes = frozenset(nodes)
        self.config = config
        self.hosts = config.root / "hosts.json"
        self.pods: dict[str, dict[str, Any]] = {}  # uid -> latest pod (every node: Services need them all)
        self.running: dict[str, PodRun] = {}
        self.waiting: dict[str, str] = {}  # uid -> reason last reported (pod not startable yet)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ips = (f"127.0.{a}.{b}" for a in range(100, 200) for b in range(1, 255))
        self._ip_of: dict[str, str] = {}  # uid -> the pod's IP (kept while it waits to start)
        self._next_try: dict[str, float] = {}
        self._hosts_at = 0.0
        self._heartbeat_at = 0.0
        self._threads = [threading.Thread(target=self._watch_loop, name="kubelet-watch", daemon=True),
                         threading.Thread(target=self._work_loop, name="kubelet-work", daemon=True)]

    def start(self) -> Kubelet:
        self.config.root.mkdir(parents=True, exist_ok=True)
        self.hosts.write_text("{}")
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop the loops and kill every process (the node goes away; the API is left as it is)."""
        self._stop.set()
        self._threads[1].join(15)  # the watch thread (a daemon) ends at its next event or timeout
        for run in list(self.running.values()):
            self._signal(run, run.runs, signal.SIGKILL)

    # -- watch ----------------------------------------------------------------------------------------
    def _watch_loop(self) -> None:
        since = ""
        while not self._stop.is_set():
            try:
                if not since:
                    items, since = self.client.list("pods")
                    with self._lock:
                        self.pods = {p["metadata"]["uid"]: p for p in items}
                for event in self.client.watch("pods", since, timeout_s=5):
                    if event["type"] == "ERROR":
                        since = ""
                        break
                    pod = event["object"]
                    since = pod["metadata"]["resourceVersion"]
                    with self._lock:
                        if event["type"] == "DELETED":
                            self.pods.pop(pod["metadata"]["uid"], None)
                        else:
                            self.pods[pod["metadata"]["uid"]] = pod
                    if self._stop.is_set():
                        return
            except Exception as exc:  # noqa: BLE001 - the API restarts in some tests; relist after a pause
                log.debug("kubelet watch: %s", exc)
                since = ""
                self._stop.wait(0.5)

    # -- work -----------------------------------------------------------------------------------------
    def _work_loop(self) -> None:
        while not self._stop.wait(STEP_S):
            try:
                self.step()
            except Exception:  # noqa: BLE001 - one bad step must not stop the node
                log.exception("kubelet step failed")

    def step(self) -> None:
        with self._lock:
            pods = dict(self.pods)
        if time.monotonic() > self._hosts_at:
            self._hosts_at = time.monotonic() + 0.5
            self._write_hosts(pods)
        if time.monotonic() > self._heartbeat_at:
            self._heartbeat_at = time.monotonic() + HEARTBEAT_S
            self._heartbeat()
        for uid, pod in pods.items():
            if pod["spec"].get("nodeName") not in self.nodes or uid in self.running:
                continue
            if pod["metadata"].get("deletionTimestamp"):
                self.client.delete_pod_now(pod["metadata"]["namespace"], pod["metadata"]["name"], uid)
            elif (pod.get("status") or {}).get("phase", "Pending") == "Pending":
                self._start(pod)
        for uid, run in list(self.running.items()):
            pod = pods.get(uid)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                self._kill(run, pod)
            else:
                run.pod = pod
                self._poll(run)

    def _start(self, pod: dict[str, Any]) -> None:
        uid, meta = pod["metadata"]["uid"], pod["metadata"]
        if time.monotonic() < self._next_try.get(uid, 0.0):
            return
        self._next_try[uid] = time.monotonic() + 1.0
        ip = self._ip_of.setdefault(uid, next(self._ips))
        try:
            runs = container_runs(self.config, self.client, pod, ip, self.hosts)
        except NotReady as exc:
            if self.waiting.get(uid) != str(exc):
                self.waiting[uid] = str(exc)
                statuses = [{"name": c["name"], "state": {"waiting": {"reason": exc.reason, "message": str(exc)}},
                             "ready": False, "restartCount": 0, "image": c.get("image", "")}
                            for c in pod["spec"].get("containers") or []]
                self.client.patch_pod_status(meta["namespace"], meta["name"],
                                             {"phase": "Pending", "containerStatuses": statuses})
            return
        run = PodRun(pod, ip, runs)
        pod_dir(self.config, pod).mkdir(parents=True, exist_ok=True)
        self._launch_next(run)
        self.running[uid] = run
        self.waiting.pop(uid, None)
        log.info("pod %s/%s started at %s", meta["namespace"], meta["name"], ip)
        self._report(run)

    def _launch_next(self, run: PodRun) -> None:
        """Start containers in order up to and including the next init container (it must complete first)."""
        for container in run.runs:
            if container.name in run.states:
                if container.kind == "init" and "terminated" not in run.states[container.name]:
                    return
                continue
            self._launch(run, container)
            if container.kind == "init":
                return
        run.phase = "Running"

    def _launch(self, run: PodRun, container: ContainerRun) -> None:
        with container.log.open("ab") as out:
            proc = subprocess.Popen(container.argv, env=container.env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=pod_dir(self.config, run.pod),
                                    start_new_session=True)
        run.procs[container.name] = proc
        run.states[container.name] = {"running": {"startedAt": _now()}}

    def _poll(self, run: PodRun) -> None:
        changed = False
        for container in run.runs:
            proc = run.procs.get(container.name)
            if proc is None or proc.poll() is None or "terminated" in run.states[container.name]:
                continue
            code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
            started = run.states[container.name].get("running", {}).get("startedAt", run.started_at)
            if container.sidecar and run.stopping_since is None:  # a sidecar that died is restarted
                run.restarts[container.name] = run.restarts.get(container.name, 0) + 1
                self._launch(run, container)
            else:
                run.states[container.name] = {"terminated": {
                    "exitCode": code, "reason": "Completed" if code == 0 else "Error", "startedAt": started,
                    "finishedAt": _now()}}
            changed = True
            if container.kind == "init" and code == 0:
                self._launch_next(run)
            elif container.kind == "init":  # a failed init container fails a restartPolicy Never pod
                for main in run.mains:
                    run.states[main.name] = {"terminated": {"exitCode": code, "reason": "Init:Error",
                                                            "startedAt": run.started_at, "finishedAt": _now()}}
        mains_done = all("terminated" in run.states.get(c.name, {}) for c in run.mains)
        if mains_done and run.stopping_since is None:
            run.stopping_since = time.monotonic()
            self._signal(run, [c for c in run.runs if c.sidecar], signal.SIGTERM)
        if run.stopping_since is not None and time.monotonic() - run.stopping_since > STOP_WAIT_S:
            self._signal(run, [c for c in run.runs if c.sidecar], signal.SIGKILL)
        if mains_done and all("terminated" in run.states.get(c.name, {"terminated": 1}) for c in run.runs) \
                and run.phase in ("Pending", "Running"):
            ok = all(run.states[c.name]["terminated"]["exitCode"] == 0 for c in run.mains)
            run.phase = "Succeeded" if ok else "Failed"
            changed = True
        if changed:
            self._report(run)

    def _signal(self, run: PodRun, containers: list[ContainerRun], sig: int) -> None:
        for container in containers:
            proc = run.procs.get(container.name)
            if proc is not None and proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass

    def _kill(self, run: PodRun, pod: dict[str, Any] | None) -> None:
        """A deleted pod: SIGTERM its processes, SIGKILL after the grace period, then finish the delete."""
        meta = run.pod["metadata"]
        grace = min(STOP_WAIT_S, float((pod or {}).get("metadata", {}).get("deletionGracePeriodSeconds", 0) or 0))
        self._signal(run, run.runs, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p.poll() is None for p in run.procs.values()):
            time.sleep(0.05)
        self._signal(run, run.runs, signal.SIGKILL)
        for proc in run.procs.values():
            proc.wait(5)
        del self.running[meta["uid"]]
        log.info("pod %s/%s stopped", meta["namespace"], meta["name"])
        if pod is not None:
            self.client.delete_pod_now(meta["namespace"], meta["name"], meta["uid"])

    def _report(self, run: PodRun) -> None:
        def statuses(main: bool) -> list[dict[str, Any]]:
            result = []
            for container in (c for c in run.runs if (c.kind == "main") == main):
                state = run.states.get(container.name, {"waiting": {"reason": "PodInitializing"}})
                result.append({"name": container.name, "state": state, "ready": "running" in state,
                               "started": "running" in state, "restartCount": run.restarts.get(container.name, 0),
                               "image": next((c.get("image", "") for c in [*run.pod["spec"].get("containers", []),
                                              *run.pod["spec"].get("initContainers", [])]
                                              if c["name"] == container.name), "")})
            return result

        mains = statuses(True)
        ready = "True" if run.phase == "Running" and all(s["ready"] for s in mains) else "False"
        status = {"phase": run.phase, "podIP": run.ip, "podIPs": [{"ip": run.ip}], "hostIP": "127.0.0.1",
                  "startTime": run.started_at, "containerStatuses": mains, "initContainerStatuses": statuses(False),
                  "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "True"},
                                 {"type": "ContainersReady", "status": ready}, {"type": "Ready", "status": ready}]}
        meta = run.pod["metadata"]
        self.client.patch_pod_status(meta["namespace"], meta["name"], status)

    def _heartbeat(self) -> None:
        """Register the nodes (a real control plane garbage-collects pods bound to a node that does not exist)
        and keep them Ready."""
        ready = {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                 "message": "fedmist process kubelet", "lastHeartbeatTime": _now()}]}
        for node in sorted(self.nodes):
            if self.client.call("GET", f"/api/v1/nodes/{node}") is None:
                try:
                    self.client.call("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {
                        "name": node, "labels": {"kubernetes.io/hostname": node}}})
                except urllib.error.HTTPError as exc:
                    if exc.code != 409:
                        raise
            self.client.call("PATCH", f"/api/v1/nodes/{node}/status", {"status": ready},
                             "application/merge-patch+json")

    def _write_hosts(self, pods: dict[str, dict[str, Any]]) -> None:
        """``<service>.<namespace>`` -> the IP of a running pod its selector matches (what cluster DNS and
        kube-proxy together give a client)."""
        services, _ = self.client.list("services")
        table = {}
        for service in services:
            selector = (service.get("spec") or {}).get("selector") or {}
            meta = service["metadata"]
            for pod in pods.values():
                labels = pod["metadata"].get("labels") or {}
                status = pod.get("status") or {}
                if (selector and pod["metadata"]["namespace"] == meta["namespace"] and status.get("podIP")
                        and status.get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp")
                        and all(labels.get(k) == v for k, v in selector.items())):
                    table[f"{meta['name']}.{meta['namespace']}"] = status["podIP"]
        text = json.dumps(table, sort_keys=True)
        if text != self.hosts.read_text():
            tmp = Path(f"{self.hosts}.tmp")
            tmp.write_text(text)
            tmp.replace(self.hosts)
