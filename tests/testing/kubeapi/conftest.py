"""The emulated API with fedmist's CRDs and ``deploy/rbac.yaml`` applied, one per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubeapi_helpers import REPO

from fedmist.testing.kubeapi import KubeApiServer


@pytest.fixture
def api() -> Iterator[KubeApiServer]:
    server = KubeApiServer().start()
    for crd in sorted((REPO / "deploy" / "crds").glob("*.yaml")):
        server.apply_file(crd)
    server.apply_file(REPO / "deploy" / "rbac.yaml")
    yield server
    server.stop()
