"""Shared end-to-end fixtures: small real Fashion-MNIST splits made with the real CLI, once per session."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_helpers import FMNIST, fedmist, split_fmnist


@pytest.fixture(scope="session")
def small_fmnist(tmp_path_factory) -> dict[str, Path]:
    """public 5k / edge1 3k / edge2 3k / test 10k, and a LeNet-5 pretrained on the public split."""
    if not (FMNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.fail("Fashion-MNIST missing: apt-get install dataset-fashion-mnist")
    root = tmp_path_factory.mktemp("fmnist")
    split = fedmist("data", "split", "--source", str(FMNIST), "--out", str(root / "data"),
                    "--public", "5000", "--edges", "3000,3000", "--seed", "1")
    assert split.returncode == 0, split.stderr
    pre = fedmist("pretrain", "--data", str(root / "data" / "public"), "--out",
                  str(root / "pretrained" / "lenet5.pth"), "--epochs", "3")
    assert pre.returncode == 0, pre.stderr
    return {"data": root / "data", "pretrained": root / "pretrained", "root": root}


@pytest.fixture(scope="session")
def fedavg_data(tmp_path_factory) -> Path:
    """edge1/edge2 of 2,500 images each and the 10k test set, as IDX (the FedAvg, S3 and security jobs)."""
    return split_fmnist(tmp_path_factory.mktemp("fedavg") / "data", "2500,2500", seed=2)


@pytest.fixture()
def s3_server():
    """A real S3-compatible server (moto's standalone server) as its own process on 127.0.0.1; its url."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    yield endpoint
    proc.terminate()
    proc.wait(10)
