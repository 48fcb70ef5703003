"""One login for both clients of ``fedmist operator``: kopf's watches and ``RestApi``'s reads and writes.

Why one: kopf authenticates through login handlers, and a second way for the REST client (the former
in-cluster-only token plus ``kubectl proxy``) was a second thing to configure and to get wrong. The
handler here runs kopf's own two standard logins (the pod's ServiceAccount; ``KUBECONFIG`` or
``~/.kube/config``), keeps the winner by kopf's priorities (ServiceAccount over kubeconfig, as kopf's
default registry does), hands it to kopf and to ``RestApi``, and runs again when either client is refused
with 401 (a rotated ServiceAccount token reaches both). kopf is imported only inside the functions, so the
module loads without it.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Final, Protocol

log = logging.getLogger("fedmist.operator")

SERVICE_ACCOUNT_TOKEN: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
NO_CREDENTIALS: Final = ("no Kubernetes credentials: run in a pod with a ServiceAccount, or set KUBECONFIG "
                         "(or have ~/.kube/config)")


class Connection(Protocol):
    """What ``RestApi`` needs of a login: kopf's ``ConnectionInfo`` has exactly this."""

    server: str

    def as_http_headers(self) -> dict[str, str]: ...

    def as_ssl_context(self) -> Any: ...


class LoginFailed(Exception):
    """No usable credentials; the message says which source failed and why (one line)."""


def standard_login(settings: Any = None) -> Connection:
    """kopf's standard login, as its default registry runs it: every source that answers, the highest
    priority wins. Raises ``LoginFailed`` with the reason (file missing, no current context...)."""
    import kopf

    settings = settings or kopf.OperatorSettings()
    found, errors = [], []
    for source, fn in (("ServiceAccount", kopf.login_with_service_account), ("kubeconfig", kopf.login_with_kubeconfig)):
        try:
            info = fn(settings=settings, logger=log)
        except Exception as exc:  # noqa: BLE001 - a bad kubeconfig of any sort becomes one line
            errors.append(f"{source}: {type(exc).__name__}: {exc}")
            continue
        if info is not None and info.server:
            found.append(info)
    if not found:
        raise LoginFailed("; ".join(errors) or NO_CREDENTIALS)
    return max(found, key=lambda info: info.priority)


def credential_sources() -> list[str]:
    """Where credentials could come from here (empty: the operator cannot start)."""
    sources = [str(SERVICE_ACCOUNT_TOKEN)] if SERVICE_ACCOUNT_TOKEN.exists() else []
    kubeconfig = os.environ.get("KUBECONFIG") or ("~/.kube/config" if Path("~/.kube/config").expanduser().exists()
                                                  else "")
    return sources + ([f"kubeconfig {kubeconfig}"] if kubeconfig else [])


class Credentials:
    """The current login, shared by kopf's login handler and ``RestApi`` (threads: kopf runs sync handlers
    in a thread pool)."""

    def __init__(self, initial: Connection | None = None) -> None:
        self._lock = threading.Lock()
        self._current = initial

    def login(self, settings: Any = None) -> Connection:
        connection = standard_login(settings)
        with self._lock:
            self._current = connection
        return connection

    def current(self) -> Connection:
        with self._lock:
            connection = self._current
        return connection if connection is not None else self.login()

    def kopf_handler(self, settings: Any, **_: Any) -> Any:
        """The ``@kopf.on.login`` handler: kopf gets the same ``ConnectionInfo`` as ``RestApi``."""
        try:
            return self.login(settings)
        except LoginFailed as exc:
            log.error("login failed: %s", exc)
            return None
