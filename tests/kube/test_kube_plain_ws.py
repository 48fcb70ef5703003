"""``fedmist render`` says when a job's pods would talk plain ws (no TLS Secret) without ``allow_plain_ws`` set,
so the refusal the workers would make at start is known before anything is applied."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from kube_helpers import MNIST


def _render(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedmist", "render", "-f", str(path)], capture_output=True,
                          text=True, timeout=60)


def _with_plain_ws(tmp_path: Path, workers: str) -> Path:
    docs = list(yaml.safe_load_all(MNIST.read_text()))
    job = next(d for d in docs if d["kind"] == "FederatedLearningJob")
    templates = [job["spec"]["aggregationWorker"]["template"]] if "aggregator" in workers else []
    templates += [w["template"] for w in job["spec"]["trainingWorkers"]] if "trainers" in workers else []
    for template in templates:
        template["spec"]["containers"][0]["env"].append({"name": "allow_plain_ws", "value": "true"})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def test_render_warns_about_plain_ws_until_every_worker_allows_it(tmp_path: Path) -> None:
    bare = _render(MNIST)
    assert bare.returncode == 0, bare.stderr
    assert ("warning: job mnist-mistnet has no TLS Secret (spec.transmitter.ws.credentialName with tls.crt/tls.key/"
            "ca.crt), so its pods talk plain ws and spec.aggregationWorker, spec.trainingWorkers[0], "
            "spec.trainingWorkers[1] will refuse to start: set allow_plain_ws: \"true\" in every worker's env to "
            "accept that bits and weights cross the network unencrypted, or name a TLS Secret\n") in bare.stderr
    partly = _render(_with_plain_ws(tmp_path, "trainers"))
    assert "so its pods talk plain ws and spec.aggregationWorker will refuse to start" in partly.stderr
    allowed = _render(_with_plain_ws(tmp_path, "aggregator trainers"))
    assert allowed.returncode == 0 and "plain ws" not in allowed.stderr, allowed.stderr
    pods = [d for d in yaml.safe_load_all(allowed.stdout) if d["kind"] == "Pod"]
    assert all({"name": "allow_plain_ws", "value": "true"} in pod["spec"]["containers"][0]["env"] for pod in pods)
