"""``fedmist operator`` as the cluster tests start it: the real CLI, with two stand-ins for what the operator
on this commit lacks (issue 22 point 1, owned by the ``operator`` branch), each applied only where missing:

- kopf's standard login: a registry without login handlers gets ``kopf.login_with_kubeconfig`` (reads
  ``KUBECONFIG``), else kopf exits with "Ran out of valid credentials";
- the REST client's credentials: ``restapi.RestApi`` reads its token only from the in-cluster ServiceAccount
  folder; ``FEDMIST_TEST_SERVICE_ACCOUNT`` points that folder at the test's (its server comes from
  ``FEDMIST_KUBE_URL``).

Run: ``python tests/e2e/operator_shim.py operator --namespace ns --interval 1``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import kopf
from kopf._core.intents.causes import Activity

from fedmist.launch.kube import operator, restapi

_build_registry = operator.build_registry


def _with_login(*args: Any, **kwargs: Any) -> Any:
    registry = _build_registry(*args, **kwargs)
    if not registry._activities.get_handlers(activity=Activity.AUTHENTICATION):
        kopf.on.login(registry=registry)(kopf.login_with_kubeconfig)
    return registry


operator.build_registry = _with_login
if os.environ.get("FEDMIST_TEST_SERVICE_ACCOUNT") and hasattr(restapi, "SERVICE_ACCOUNT"):
    restapi.SERVICE_ACCOUNT = Path(os.environ["FEDMIST_TEST_SERVICE_ACCOUNT"])

if __name__ == "__main__":
    from fedmist.cli import main

    sys.exit(main(sys.argv[1:]))
