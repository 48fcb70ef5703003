"""``fedmist operator``: kopf handlers over ``Controller`` (the pure logic lives elsewhere; this is wiring).

Handlers: job create/resume/update of ``spec`` -> sync; a timer every ``interval`` seconds while a job lives
-> sync (progress from the aggregator's status sidecar, backoff deadlines); pod events of a job -> sync of
that job (failures, deletions). kopf is imported here only, so the rest of fedmist works without it, and
handlers go to a registry of their own (no module-level decorators, nothing registered at import time).
"""

from __future__ import annotations

import logging
from typing import Any

from fedmist.launch.kube import names
from fedmist.launch.kube.controller import Controller

KOPF_MISSING = "fedmist operator needs kopf: pip install 'fedmist[kube]'"
log = logging.getLogger("fedmist.operator")


def build_registry(controller: Controller, interval_s: float) -> Any:
    """A kopf ``OperatorRegistry`` whose handlers all call ``controller.sync``."""
    import kopf

    registry = kopf.OperatorRegistry()

    def sync(namespace: str, name: str, **_: Any) -> None:
        plan = controller.sync(namespace, name)
        if plan is not None and plan.requeue_after is not None:
            log.debug("%s/%s: next look in %.0f s", namespace, name, plan.requeue_after)

    def pod_event(body: Any, namespace: str, **_: Any) -> None:
        job = (body.get("metadata", {}).get("labels") or {}).get(names.LABEL_JOB)
        if job:
            controller.sync(namespace, job)

    resource = (names.GROUP, names.VERSION, names.JOB_PLURAL)
    kopf.on.create(*resource, registry=registry)(sync)
    kopf.on.resume(*resource, registry=registry)(sync)
    kopf.on.update(*resource, field="spec", registry=registry)(sync)
    kopf.timer(*resource, interval=interval_s, registry=registry)(sync)
    kopf.on.event("v1", "pods", labels={names.LABEL_JOB: kopf.PRESENT}, registry=registry)(pod_event)
    return registry


def run_operator(namespace: str | None, interval_s: float, image: str) -> int:
    """Run until interrupted; watches one namespace, or all when ``namespace`` is None."""
    try:
        import kopf
    except ImportError:
        raise SystemExit(KOPF_MISSING) from None
    from fedmist.launch.kube.restapi import RestApi, http_report

    controller = Controller(RestApi(), reports=http_report, image=image)
    kopf.run(registry=build_registry(controller, interval_s), standalone=True,
             namespaces=[namespace] if namespace else (), clusterwide=namespace is None)
    return 0
