"""``fedmist operator``: kopf handlers over ``Controller`` (the pure logic lives elsewhere; this is wiring).

Handlers: login -> kopf's standard login (ServiceAccount in a pod, ``KUBECONFIG`` outside), shared with
``RestApi`` (``login.Credentials``); job create/resume/update of ``spec`` -> sync; a timer every
``interval`` seconds while a job lives -> sync (progress from the aggregator's status sidecar, backoff
deadlines); pod events of a job -> sync of that job (failures, deletions). kopf is imported here only, so
the rest of fedmist works without it, and handlers go to a registry of their own (no module-level
decorators, nothing registered at import time). An API refusal is logged as one line with the server's
reason, and the timer tries again; anything else reaches kopf (traceback, kopf's retry).

kopf's timer puts kopf's finalizer on every job: while the operator is down, ``kubectl delete fl`` waits
(deploy/README.md says how to remove the finalizer by hand).
"""

from __future__ import annotations

import logging
from typing import Any

from fedmist.launch.kube import names
from fedmist.launch.kube.api import ApiError
from fedmist.launch.kube.controller import Controller
from fedmist.launch.kube.login import Credentials

KOPF_MISSING = "fedmist operator needs kopf: pip install 'fedmist[kube]'"
log = logging.getLogger("fedmist.operator")


def build_registry(controller: Controller, interval_s: float, credentials: Credentials | None = None) -> Any:
    """A kopf ``OperatorRegistry``: the login handler of ``credentials`` and handlers that call
    ``controller.sync``."""
    import kopf

    registry = kopf.OperatorRegistry()
    if credentials is not None:
        kopf.on.login(registry=registry)(credentials.kopf_handler)

    def sync(namespace: str, name: str, **_: Any) -> None:
        try:
            plan = controller.sync(namespace, name)
        except ApiError as exc:
            log.error("%s/%s: %s", namespace, name, exc)
            return
        if plan is not None and plan.requeue_after is not None:
            log.debug("%s/%s: next look in %.0f s", namespace, name, plan.requeue_after)

    def pod_event(body: Any, namespace: str, **_: Any) -> None:
        job = (body.get("metadata", {}).get("labels") or {}).get(names.LABEL_JOB)
        if job:
            sync(namespace, job)

    resource = (names.GROUP, names.VERSION, names.JOB_PLURAL)
    kopf.on.create(*resource, registry=registry)(sync)
    kopf.on.resume(*resource, registry=registry)(sync)
    kopf.on.update(*resource, field="spec", registry=registry)(sync)
    kopf.timer(*resource, interval=interval_s, registry=registry)(sync)
    kopf.on.event("v1", "pods", labels={names.LABEL_JOB: kopf.PRESENT}, registry=registry)(pod_event)
    return registry


# How often kopf looks again at a timer that was still running when its job was deleted. kopf's default is 60 s:
# a `kubectl delete fl` that lands during a sync (they run every `interval`) then waits a minute for the
# finalizer. A sync is bounded (API calls time out in seconds), so one second is enough.
TIMER_EXIT_POLL_S = 1.0


def operator_settings() -> Any:
    """kopf settings of the operator (see ``TIMER_EXIT_POLL_S``)."""
    import kopf

    settings = kopf.OperatorSettings()
    settings.background.cancellation_polling = TIMER_EXIT_POLL_S
    return settings


def run_operator(namespace: str | None, interval_s: float, image: str, credentials: Credentials) -> int:
    """Run until interrupted; watches one namespace, or all when ``namespace`` is None. ``credentials`` has
    logged in once already (the CLI turns a failed login into a one-line error)."""
    try:
        import kopf
    except ImportError:
        raise SystemExit(KOPF_MISSING) from None
    from fedmist.launch.kube.restapi import RestApi, http_report

    controller = Controller(RestApi(credentials), reports=http_report, image=image)
    log.info("API server %s", credentials.current().server)
    kopf.run(registry=build_registry(controller, interval_s, credentials), settings=operator_settings(),
             standalone=True,
             namespaces=[namespace] if namespace else (), clusterwide=namespace is None)
    return 0
