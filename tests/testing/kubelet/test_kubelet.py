"""The process kubelet against the emulated API: pods become processes with their env, volumes, IP and
sidecars, report their states and exit codes, and die with their Pod."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fedmist.testing.kubeapi import KubeApiServer
from fedmist.testing.kubelet import Kubelet, NodeConfig
from fedmist.testing.kubelet.client import ApiClient

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[2] / "src"
PODS = "/api/v1/namespaces/default/pods"


@pytest.fixture
def cluster(tmp_path) -> Iterator[tuple[ApiClient, Path]]:
    api = KubeApiServer().start()
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{SRC}:{HERE}"}
    kubelet = Kubelet(ApiClient(api.url, api.admin_token), ["edge1"], NodeConfig(
        root=tmp_path / "node", host_paths={"/out": tmp_path / "shared"}, base_env=env)).start()
    yield ApiClient(api.url, api.admin_token), tmp_path
    kubelet.stop()
    api.stop()


def probe_pod(name: str, args: list[str], env: list[dict[str, Any]] | None = None, node: str = "edge1",
              labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "probe", "command": ["python", "-m", "kubelet_probe"], "args": args,
                 "env": env or [], "volumeMounts": [{"name": "out", "mountPath": "/out"},
                                                    {"name": "state", "mountPath": "/var/lib/probe"}]}
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {
        "nodeName": node, "restartPolicy": "Never", "containers": [container], **spec,
        "volumes": [{"name": "out", "hostPath": {"path": "/out", "type": "DirectoryOrCreate"}},
                    {"name": "state", "hostPath": {"path": "/var/lib/probe", "type": "DirectoryOrCreate"}}]}}


def wait_for(client: ApiClient, name: str, until: Callable[[dict[str, Any]], bool], timeout_s: float = 20) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pod = client.get("default", "pods", name)
        if until(pod):
            return pod
        time.sleep(0.1)
    raise AssertionError(f"pod {name}: {json.dumps(client.get('default', 'pods', name), indent=1)}")


def phase(wanted: str) -> Callable[[dict[str, Any] | None], bool]:
    return lambda pod: pod is not None and (pod.get("status") or {}).get("phase") == wanted


def test_a_pod_runs_with_its_env_volumes_own_ip_and_service_names(cluster):
    client, tmp = cluster
    client.call("POST", "/api/v1/namespaces/default/secrets", {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    client.call("POST", "/api/v1/namespaces/default/services",
                {"metadata": {"name": "svc"}, "spec": {"selector": {"app": "srv"}, "ports": [{"port": 80}]}})
    client.call("POST", PODS, probe_pod("srv", ["/out/srv.json", "0", "wait"], labels={"app": "srv"}))
    server = wait_for(client, "srv", phase("Running"))
    env = [{"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
           {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
           {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "STATE", "value": "/var/lib/probe/x"}, {"name": "PROBE_RESOLVE", "value": "svc"}]
    time.sleep(0.6)  # the hosts table follows the Service's pod within 0.5 s
    client.call("POST", PODS, probe_pod("cli", ["/out/cli.json", "0"], env))
    pod = wait_for(client, "cli", phase("Succeeded"))
    seen = json.loads((tmp / "shared" / "cli.json").read_text())
    ip = pod["status"]["podIP"]
    assert ip.startswith("127.0.") and ip != server["status"]["podIP"]
    assert seen["env"]["SECRET"] == "v" and seen["env"]["MY_IP"] == ip and seen["env"]["MY_NAME"] == "cli"
    assert seen["env"]["STATE"] == str(tmp / "node" / "nodes" / "edge1" / "var" / "lib" / "probe" / "x")
    assert seen["argv"][1] == str(tmp / "shared" / "cli.json")  # the mount path in args maps to the host folder
    assert seen["bound"] == ip and seen["resolved"] == server["status"]["podIP"]
    main = pod["status"]["containerStatuses"][0]
    assert main["name"] == "main" and main["state"]["terminated"]["exitCode"] == 0
    assert main["state"]["terminated"]["reason"] == "Completed"


def test_exit_code_fails_the_pod_and_the_native_sidecar_is_stopped_after_the_container(cluster):
    client, tmp = cluster
    sidecar = {"name": "side", "image": "probe", "restartPolicy": "Always",
               "command": ["python", "-m", "kubelet_probe"], "args": ["/out/side.json", "0", "wait"],
               "volumeMounts": [{"name": "out", "mountPath": "/out"}]}
    client.call("POST", PODS, probe_pod("failing", ["/out/main.json", "3"], initContainers=[sidecar]))
    pod = wait_for(client, "failing", phase("Failed"))
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"] == {
        **pod["status"]["containerStatuses"][0]["state"]["terminated"], "exitCode": 3, "reason": "Error"}
    side = pod["status"]["initContainerStatuses"][0]
    assert side["name"] == "side" and side["state"]["terminated"]["exitCode"] == 143  # SIGTERM once main exited
    assert (tmp / "shared" / "side.json").exists()


def test_init_containers_run_to_completion_first_and_a_failed_one_fails_the_pod(cluster):
    client, tmp = cluster
    init = {"name": "init", "image": "probe", "command": ["python", "-m", "kubelet_probe"],
            "args": ["/out/init.json", "0"], "volumeMounts": [{"name": "out", "mountPath": "/out"}]}
    client.call("POST", PODS, probe_pod("ordered", ["/out/after-init.json", "0"], initContainers=[init]))
    pod = wait_for(client, "ordered", phase("Succeeded"))
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    first = json.loads((tmp / "shared" / "init.json").read_text())["pid"]
    assert first != json.loads((tmp / "shared" / "after-init.json").read_text())["pid"]
    assert (tmp / "shared" / "init.json").stat().st_mtime <= (tmp / "shared" / "after-init.json").stat().st_mtime
    client.call("POST", PODS, probe_pod("blocked", ["/out/never.json", "0"],
                                        initContainers=[{**init, "args": ["/out/init2.json", "4"]}]))
    pod = wait_for(client, "blocked", phase("Failed"))
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 4
    assert not (tmp / "shared" / "never.json").exists()


def test_a_deleted_pod_is_killed_by_pid_and_then_removed(cluster):
    client, tmp = cluster
    client.call("POST", PODS, probe_pod("doomed", ["/out/doomed.json", "0", "wait"]))
    wait_for(client, "doomed", phase("Running"))
    deadline = time.monotonic() + 10
    while not (tmp / "shared" / "doomed.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = json.loads((tmp / "shared" / "doomed.json").read_text())["pid"]
    os.kill(pid, 0)
    client.call("DELETE", f"{PODS}/doomed")
    wait_for(client, "doomed", lambda pod: pod is None)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_pod_waits_for_its_secret_and_pods_of_other_nodes_are_left_alone(cluster):
    client, _ = cluster
    env = [{"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "later", "key": "k"}}}]
    client.call("POST", PODS, probe_pod("waiting", ["/out/w.json", "0"], env))
    client.call("POST", PODS, probe_pod("elsewhere", ["/out/e.json", "0"], node="edge9"))
    pod = wait_for(client, "waiting", lambda p: bool((p.get("status") or {}).get("containerStatuses")))
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert pod["status"]["phase"] == "Pending" and waiting == {"reason": "CreateContainerConfigError",
                                                               "message": 'Secret "later" not found'}
    client.call("POST", "/api/v1/namespaces/default/secrets", {"metadata": {"name": "later"}, "stringData": {"k": "v"}})
    wait_for(client, "waiting", phase("Succeeded"))
    assert client.get("default", "pods", "elsewhere")["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
