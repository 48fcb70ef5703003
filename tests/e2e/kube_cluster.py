"""The test cluster of the Kubernetes end-to-end tests: the emulated API (``fedmist.testing.kubeapi``) with
the CRDs and ``deploy/rbac.yaml`` applied, a process kubelet for the job's nodes, and the real ``fedmist
operator`` as its own process, authenticated as the ServiceAccount of ``deploy/rbac.yaml`` through a
kubeconfig (the operator logs in from ``KUBECONFIG``, as on a laptop)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from e2e_helpers import REPO

from fedmist.testing.kubeapi import KubeApiServer, User
from fedmist.testing.kubelet import ApiClient, Kubelet, NodeConfig

GROUP_PATH = "/apis/sedna.io/v1alpha1"
NODES = ("cloud", "edge1", "edge2")


@dataclass
class Cluster:
    api: KubeApiServer
    kubelet: Kubelet
    root: Path
    namespace: str
    operator_env: dict[str, str]
    operator: subprocess.Popen | None = None
    operator_starts: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # job statuses seen by wait_job

    # -- the admin's view, over HTTP like kubectl ---------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.api.admin_token}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, timeout=10) as reply:
            return json.loads(reply.read() or b"null")

    def get(self, path: str) -> Any:
        try:
            return self.request("GET", path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def job(self, name: str) -> dict[str, Any] | None:
        return self.get(f"{GROUP_PATH}/namespaces/{self.namespace}/federatedlearningjobs/{name}")

    def pods(self, job: str) -> list[dict[str, Any]]:
        selector = urllib.parse.urlencode({"labelSelector": f"federatedlearningjob.sedna.io/name={job}"})
        return self.get(f"/api/v1/namespaces/{self.namespace}/pods?{selector}")["items"]

    def apply(self, documents: list[dict[str, Any]]) -> None:
        """``kubectl create -f`` of the documents, in order, into the cluster's namespace."""
        for doc in documents:
            plural = {"Dataset": "datasets", "Model": "models", "FederatedLearningJob": "federatedlearningjobs",
                      "Secret": "secrets"}[doc["kind"]]
            prefix = "/api/v1" if doc["kind"] == "Secret" else GROUP_PATH
            self.request("POST", f"{prefix}/namespaces/{self.namespace}/{plural}", doc)

    def delete_pod(self, name: str) -> None:
        self.request("DELETE", f"/api/v1/namespaces/{self.namespace}/pods/{name}")

    # -- the operator process -----------------------------------------------------------------------------
    def start_operator(self) -> None:
        self.operator_starts += 1
        log = (self.root / f"operator-{self.operator_starts}.log").open("w")
        self.operator = subprocess.Popen(
            [sys.executable, "-m", "fedmist", "operator", "--namespace",
             self.namespace, "--interval", "1"], env=self.operator_env, stdout=log, stderr=subprocess.STDOUT,
            cwd=REPO)

    def stop_operator(self) -> None:
        if self.operator is not None and self.operator.poll() is None:
            self.operator.terminate()
            try:
                self.operator.wait(15)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                self.operator.wait(5)
        self.operator = None

    def operator_log(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.root.glob("operator-*.log")))

    def wait_job(self, name: str, until: Callable[[dict[str, Any]], bool], timeout_s: float) -> dict[str, Any]:
        """Poll the job (every 0.3 s, recording each new status) until ``until(job)``; fails with the logs."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.job(name) or {}
            status = job.get("status") or {}
            if status and (not self.history or self.history[-1] != status):
                self.history.append(status)
            if until(job):
                return job
            if self.operator is not None and self.operator.poll() is not None:
                break
            time.sleep(0.3)
        logs = "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.root.glob("pods/*/*.log")))
        raise AssertionError(f"job {name} not there in {timeout_s} s: {json.dumps(self.job(name), indent=1)[-3000:]}"
                             f"\n== operator\n{self.operator_log()[-4000:]}\n{logs}")

    def close(self) -> None:
        self.stop_operator()
        self.kubelet.stop()
        self.api.stop()


def start_cluster(root: Path, host_paths: Mapping[str, Path], namespace: str = "fl",
                  version: tuple[int, int] = (1, 30)) -> Cluster:
    """API (reporting Kubernetes ``version``), CRDs, RBAC, namespace, kubelet and operator, ready for jobs."""
    root.mkdir(parents=True, exist_ok=True)
    api = KubeApiServer(version=version).start()
    for crd in sorted((REPO / "deploy" / "crds").glob("*.yaml")):
        api.apply_file(crd)
    api.apply_file(REPO / "deploy" / "rbac.yaml")
    api.call(lambda: api.store.create(api.store.registry.find("", "v1", "namespaces"), "",
                                      {"metadata": {"name": namespace}}))
    token = api.add_token(User.service_account("fedmist-system", "fedmist-operator"))
    env = {**os.environ, "KUBECONFIG": str(api.write_kubeconfig(root / "kubeconfig", token, namespace))}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    import fedmist  # pods import this checkout, whatever their working folder

    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "PYTHONPATH": str(Path(fedmist.__file__).resolve().parents[1]),
                "HOME": str(root), "OMP_NUM_THREADS": "1", "FEDMIST_THREADS": "1"}
    kubelet = Kubelet(ApiClient(api.url, api.admin_token), NODES,
                      NodeConfig(root=root / "node", host_paths=dict(host_paths), base_env=base_env)).start()
    cluster = Cluster(api, kubelet, root, namespace, env)
    cluster.start_operator()
    return cluster


def example_documents(path: Path, trainer_env: Mapping[str, str] | None = None, **agg_env: str
                      ) -> list[dict[str, Any]]:
    """The example's documents (the job last, as written), every worker allowed plain ws (the emulated cluster
    has no per-job TLS Secret), the aggregator's env changed as given and each trainer's by ``trainer_env``."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    job = next(d for d in docs if d["kind"] == "FederatedLearningJob")
    templates = [job["spec"]["aggregationWorker"]["template"],
                 *(w["template"] for w in job["spec"]["trainingWorkers"])]
    for index, template in enumerate(templates):
        container = template["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        env["allow_plain_ws"] = "true"
        env.update(agg_env if index == 0 else trainer_env or {})
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return docs
