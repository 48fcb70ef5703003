"""``fedmist render`` and ``fedmist operator`` through the real CLI, and the aggregator's status sidecar."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from kube_helpers import MNIST, SEED, SEED_NODES

from fedmist.launch.kube.statusd import ReportServer


def fedmist(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "fedmist", *args], capture_output=True, text=True, timeout=60,
                          env=full_env)


def test_render_prints_multi_document_yaml() -> None:
    result = fedmist("render", "-f", str(MNIST))
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in documents] == ["Secret", "Service", "Pod", "Pod", "Pod"]
    assert len(documents[0]["stringData"]["token"]) >= 40  # a fresh random token per render
    import kubernetes_validate
    for document in documents:
        kubernetes_validate.validate(document, "1.30", strict=True)


def test_render_seed_job_with_node_variables_and_image() -> None:
    result = fedmist("render", "-f", str(SEED), "--image", "fedmist/worker:0.1", "--no-token-secret",
                     "--uid", "1234-abcd", env=SEED_NODES)
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in documents] == ["Service", "Pod", "Pod", "Pod"]
    assert {d["metadata"]["ownerReferences"][0]["uid"] for d in documents} == {"1234-abcd"}
    assert documents[1]["spec"]["nodeName"] == "cloud-node-1"


def test_render_path_map_reroots_host_paths() -> None:
    result = fedmist("render", "-f", str(MNIST), "--path-map", "/data=/srv/fmnist")
    assert result.returncode == 0, result.stderr
    edge = [d for d in yaml.safe_load_all(result.stdout) if d["metadata"]["name"] == "mnist-mistnet-edge1"][0]
    assert [v["hostPath"]["path"] for v in edge["spec"]["volumes"]
            if "hostPath" in v and v["name"] != "fedmist-state"] == ["/srv/fmnist/edge1"]


def test_bad_manifest_exits_2_with_one_error_line(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(MNIST.read_text().replace("name: fmnist-edge2\n      template", "name: nowhere\n      template"))
    result = fedmist("render", "-f", str(job))
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0] == (f"error: {job}: FederatedLearningJob/mnist-mistnet: spec.trainingWorkers[1].dataset.name: "
                        "no Dataset named 'nowhere' is defined (got 'nowhere')")


def test_unset_node_variable_exits_2() -> None:
    result = fedmist("render", "-f", str(SEED), env={key: "" for key in SEED_NODES})
    assert result.returncode == 2
    assert "spec.aggregationWorker.template.spec.nodeName: is an unset shell variable" in result.stderr


def test_operator_without_kopf_says_what_to_install() -> None:
    code = "import sys; sys.modules['kopf'] = None; from fedmist.cli import main; sys.exit(main(['operator']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: fedmist operator needs kopf: pip install 'fedmist[kube]'"


def test_operator_without_credentials_is_a_one_line_error(tmp_path: Path) -> None:
    import kopf  # noqa: F401 - the kube extra; CI installs it
    env = {"HOME": str(tmp_path), "KUBECONFIG": ""}
    result = fedmist("operator", env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: no Kubernetes credentials: run in a pod with a ServiceAccount, or set "
                                     "KUBECONFIG (or have ~/.kube/config)")
    result = fedmist("operator", env={**env, "KUBECONFIG": str(tmp_path / "missing")})
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: cannot log in to Kubernetes: kubeconfig: FileNotFoundError")


def test_operator_help_says_how_to_log_in() -> None:
    result = fedmist("operator", "--help")
    assert result.returncode == 0
    assert "KUBECONFIG" in result.stdout and "ServiceAccount" in result.stdout


def test_status_server_exits_after_the_final_report_when_asked(tmp_path: Path) -> None:
    """Servers before 1.29 run it as a plain container: it must end by itself for the pod to complete."""
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"phase": "Running"}))
    process = subprocess.Popen([sys.executable, "-m", "fedmist.launch.kube.statusd", "--file", str(report),
                                "--port", str(port), "--exit-after-final"])
    try:
        url = f"http://127.0.0.1:{port}/report"
        deadline = time.monotonic() + 30
        while True:
            try:
                assert json.loads(urllib.request.urlopen(url, timeout=5).read()) == {"phase": "Running"}
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        time.sleep(0.6)
        assert process.poll() is None  # not final yet: keeps serving
        report.write_text(json.dumps({"phase": "Succeeded"}))
        urllib.request.urlopen(url, timeout=5).read()
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()


def test_status_sidecar_serves_the_report(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    server = ReportServer(("127.0.0.1", 0), report)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/report"
    try:
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url, timeout=5)
        assert missing.value.code == 503
        report.write_text(json.dumps({"phase": "Running", "epoch": 2}))
        assert json.loads(urllib.request.urlopen(url, timeout=5).read()) == {"phase": "Running", "epoch": 2}
        assert not server.final_served.is_set()
        report.write_text(json.dumps({"phase": "Succeeded"}))
        urllib.request.urlopen(url, timeout=5).read()
        assert server.final_served.wait(5)
    finally:
        server.shutdown()
        server.server_close()


def test_operator_registers_its_handlers_without_starting() -> None:
    import kopf

    from fedmist.launch.kube.api import MemoryApi
    from fedmist.launch.kube.controller import Controller
    from fedmist.launch.kube.operator import build_registry

    calls: list[tuple[str, str]] = []
    controller = Controller(MemoryApi())
    controller.sync = lambda namespace, name: calls.append((namespace, name))  # type: ignore[method-assign]
    registry = build_registry(controller, 5.0)
    handlers = registry._spawning.get_all_handlers() + registry._changing.get_all_handlers() \
        + registry._watching.get_all_handlers()
    assert len(handlers) == 5
    timer = registry._spawning.get_all_handlers()[0]
    assert timer.interval == 5.0
    pod_handler = registry._watching.get_all_handlers()[0]
    pod_handler.fn(body={"metadata": {"labels": {"federatedlearningjob.sedna.io/name": "j"}}}, namespace="ns")
    assert calls == [("ns", "j")]
    assert isinstance(registry, kopf.OperatorRegistry)


def test_operator_logs_an_api_refusal_with_its_reason_and_carries_on(caplog: pytest.LogCaptureFixture) -> None:
    import kopf  # noqa: F401 - the kube extra; CI installs it

    from fedmist.launch.kube.api import ApiError, MemoryApi
    from fedmist.launch.kube.controller import Controller
    from fedmist.launch.kube.operator import build_registry

    controller = Controller(MemoryApi())
    reason = ('POST /api/v1/namespaces/ns/pods: 403 Forbidden: pods "j-cloud" is forbidden: error looking up '
              'service account ns/default: serviceaccount "default" not found')

    def refused(namespace: str, name: str) -> None:
        raise ApiError(reason, 403, "Forbidden")

    controller.sync = refused  # type: ignore[method-assign]
    timer = build_registry(controller, 5.0)._spawning.get_all_handlers()[0]
    with caplog.at_level("ERROR", logger="fedmist.operator"):
        timer.fn(namespace="ns", name="j")  # no exception: the next tick tries again
    assert [r.getMessage() for r in caplog.records] == [f"ns/j: {reason}"]


def test_a_timer_running_when_its_job_is_deleted_is_looked_at_again_within_a_second() -> None:
    """kopf's default (60 s) held `kubectl delete fl` for a minute whenever the delete landed during a timer's
    sync (seen on the cluster test: the finalizer was released only after 60 s)."""
    from fedmist.launch.kube.operator import operator_settings

    assert operator_settings().background.cancellation_polling <= 1.0
