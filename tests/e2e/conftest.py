"""Shared end-to-end fixtures: small real Fashion-MNIST splits made with the real CLI, once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e_helpers import FMNIST, fedmist
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
