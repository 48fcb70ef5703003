"""The API's refusals as Kubernetes ``Status`` bodies: a client must read the same code, reason and message
from the emulation as from a kube-apiserver (the operator logs them and kopf branches on the code)."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """One refusal: HTTP ``code``, Kubernetes ``reason`` and the human ``message``."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


def _what(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_what(plural, group)} "{name}" not found',
                    {"name": name, "group": group, "kind": plural} if group else {"name": name, "kind": plural})


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{_what(plural, group)} "{name}" already exists',
                    {"name": name, "group": group, "kind": plural} if group else {"name": name, "kind": plural})


def conflict(plural: str, group: str, name: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {_what(plural, group)} "{name}": the object '
                    "has been modified; please apply your changes to the latest version and try again",
                    {"name": name, "group": group, "kind": plural} if group else {"name": name, "kind": plural})


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422: ``causes`` are (field, reason, message) like ``("spec.x", "FieldValueRequired", "Required value")``."""
    what = f"{kind}.{group}" if group else kind
    text = ", ".join(f"{field}: {message}" for field, _, message in causes)
    shown = f"[{text}]" if len(causes) > 1 else text
    return ApiError(422, "Invalid", f'{what} "{name}" is invalid: {shown}',
                    {"name": name, "group": group, "kind": kind,
                     "causes": [{"reason": r, "message": m, "field": f} for f, r, m in causes]})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)
