"""Fixtures for the Kubernetes tests (helpers live in ``kube_helpers``)."""

from __future__ import annotations

from typing import Any

import pytest
from kube_helpers import MNIST, SEED, SEED_NODES, render


@pytest.fixture
def mnist_objects() -> list[dict[str, Any]]:
    return render(MNIST)


@pytest.fixture
def seed_objects() -> list[dict[str, Any]]:
    return render(SEED, SEED_NODES)
