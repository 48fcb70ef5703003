"""``python -m fedmist.testing.kubeapi`` as a process: applies files, writes kubeconfigs, serves until SIGTERM."""

from __future__ import annotations

import subprocess
import sys
import time

import yaml
from kubeapi_helpers import REPO

from fedmist.testing.kubelet import ApiClient


def test_the_server_process_applies_files_and_writes_kubeconfigs(tmp_path):
    crds = sorted(str(p) for p in (REPO / "deploy" / "crds").glob("*.yaml"))
    proc = subprocess.Popen([sys.executable, "-m", "fedmist.testing.kubeapi", "--kubeconfig", str(tmp_path / "admin"),
                             *(f"--apply={p}" for p in crds), "--apply", str(REPO / "deploy" / "rbac.yaml"),
                             "--service-account", f"fedmist-system/fedmist-operator={tmp_path / 'op'}",
                             "--version", "1.24"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("serving the emulated Kubernetes API")
        admin, operator = ApiClient.from_kubeconfig(tmp_path / "admin"), ApiClient.from_kubeconfig(tmp_path / "op")
        assert admin.call("GET", "/version")["minor"] == "24"
        assert operator.call("GET", "/apis/sedna.io/v1alpha1/namespaces/default/federatedlearningjobs")["items"] == []
        assert operator.token and operator.token != admin.token
        assert yaml.safe_load((tmp_path / "op").read_text())["clusters"][0]["cluster"]["server"] == admin.url
    finally:
        proc.terminate()
        start = time.monotonic()
        proc.wait(10)
    assert proc.returncode == 0 and time.monotonic() - start < 5


def test_a_bad_version_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fedmist.testing.kubeapi", "--kubeconfig", str(tmp_path / "k"),
                             "--version", "latest"], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (2, "error: --version 'latest': expected MAJOR.MINOR\n")
