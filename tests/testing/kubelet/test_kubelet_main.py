"""``python -m fedmist.testing.kubelet`` as a process: it reads a kubeconfig, registers its node and runs a pod."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from fedmist.testing.kubeapi import KubeApiServer
from fedmist.testing.kubelet import ApiClient

HERE = Path(__file__).resolve().parent


def test_the_kubelet_process_serves_a_cluster_from_its_kubeconfig(tmp_path):
    api = KubeApiServer().start()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.environ.get("PYTHONPATH", ""), str(HERE)])}
    kubelet = subprocess.Popen(
        [sys.executable, "-m", "fedmist.testing.kubelet", "--kubeconfig",
         str(api.write_kubeconfig(tmp_path / "kubeconfig")), "--node", "edge1", "--root", str(tmp_path / "node"),
         "--host-path", f"/out={tmp_path / 'out'}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = ApiClient.from_kubeconfig(tmp_path / "kubeconfig")
        client.call("POST", "/api/v1/namespaces/default/pods", {"metadata": {"name": "p"}, "spec": {
            "nodeName": "edge1", "restartPolicy": "Never", "containers": [{
                "name": "c", "image": "probe", "command": ["python", "-m", "kubelet_probe"],
                "args": ["/out/p.json", "0"], "volumeMounts": [{"name": "out", "mountPath": "/out"}]}],
            "volumes": [{"name": "out", "hostPath": {"path": "/out", "type": "DirectoryOrCreate"}}]}})
        deadline = time.monotonic() + 30
        while (client.get("default", "pods", "p") or {}).get("status", {}).get("phase") != "Succeeded":
            assert time.monotonic() < deadline and kubelet.poll() is None, client.get("default", "pods", "p")
            time.sleep(0.1)
        node = client.call("GET", "/api/v1/nodes/edge1")
        assert node["status"]["conditions"][0]["type"] == "Ready" and (tmp_path / "out" / "p.json").is_file()
    finally:
        kubelet.terminate()
        output = kubelet.communicate(timeout=20)[0].decode()
        api.stop()
    assert kubelet.returncode == 0, output
    assert "pod default/p started at 127.0.100.1" in output


def test_a_missing_kubeconfig_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fedmist.testing.kubelet", "--kubeconfig",
                             str(tmp_path / "none"), "--node", "n", "--root", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == "error: --kubeconfig (or $KUBECONFIG) must name a kubeconfig file\n"
