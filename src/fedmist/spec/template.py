"""The parts of a Kubernetes PodTemplateSpec that fedmist reads.

Locally, ``nodeName`` names the worker, the first container's ``env`` and ``args`` apply, ``image`` is
recorded (not pulled: the worker code is fedmist's own) and ``resources.limits.memory`` is compared with the
worker's peak memory. The rest of the Kubernetes schema is accepted quietly so the same manifest can go to a
cluster unchanged.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from pydantic import Field, field_validator

from fedmist.spec.base import K8sModel, scalar_to_str
from fedmist.spec.quantity import parse_quantity_bytes

RESTART_POLICIES: Final = ("Always", "OnFailure", "Never")
_QUIET: Final = None


class EnvVar(K8sModel):
    """One ``env`` entry. Numbers and booleans in YAML become strings, as Kubernetes requires."""

    KNOWN_IGNORED: ClassVar[dict[str, str | None]] = {
        "valueFrom": "valueFrom is not supported locally; ignored (set value instead)",
    }

    name: str = Field(min_length=1)
    value: str = ""

    @field_validator("value", mode="before")
    @classmethod
    def _value_to_str(cls, value: object) -> str:
        return scalar_to_str(value)


class Limits(K8sModel):
    """``resources.limits``; only ``memory`` matters locally (parsed to bytes at load time)."""

    WARN_EXTRAS: ClassVar[bool] = False

    memory: int | None = None

    @field_validator("memory", mode="before")
    @classmethod
    def _memory_bytes(cls, value: object) -> int | None:
        return None if value is None else parse_quantity_bytes(value)


class Resources(K8sModel):
    KNOWN_IGNORED: ClassVar[dict[str, str | None]] = {"requests": _QUIET, "claims": _QUIET}

    limits: Limits | None = None


class Container(K8sModel):
    KNOWN_IGNORED: ClassVar[dict[str, str | None]] = {
        key: _QUIET for key in (
            "imagePullPolicy", "command", "workingDir", "ports", "volumeMounts", "volumeDevices",
            "livenessProbe", "readinessProbe", "startupProbe", "securityContext", "lifecycle", "stdin",
            "stdinOnce", "tty", "terminationMessagePath", "terminationMessagePolicy", "resizePolicy",
        )
    } | {"envFrom": "envFrom is not supported locally; ignored (list env entries instead)"}

    name: str | None = None
    image: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    resources: Resources | None = None

    @field_validator("args", mode="before")
    @classmethod
    def _args_to_str(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [scalar_to_str(item) for item in value]
        return value

    @field_validator("env")
    @classmethod
    def _unique_env(cls, value: tuple[EnvVar, ...]) -> tuple[EnvVar, ...]:
        seen: set[str] = set()
        for item in value:
            if item.name in seen:
                raise ValueError(f"{item.name!r} is defined twice")
            seen.add(item.name)
        return value

    @property
    def env_dict(self) -> dict[str, str]:
        return {item.name: item.value for item in self.env}

    @property
    def memory_limit_bytes(self) -> int | None:
        limits = self.resources.limits if self.resources else None
        return limits.memory if limits else None


class PodSpec(K8sModel):
    KNOWN_IGNORED: ClassVar[dict[str, str | None]] = {
        key: _QUIET for key in (
            "volumes", "hostNetwork", "hostPID", "hostIPC", "dnsPolicy", "dnsConfig", "tolerations",
            "affinity", "nodeSelector", "serviceAccountName", "serviceAccount", "imagePullSecrets",
            "securityContext", "hostname", "subdomain", "priorityClassName", "priority", "schedulerName",
            "terminationGracePeriodSeconds", "runtimeClassName", "topologySpreadConstraints",
            "automountServiceAccountToken", "enableServiceLinks", "shareProcessNamespace", "hostAliases",
        )
    } | {"initContainers": "initContainers are not run locally; ignored"}

    node_name: str | None = None
    restart_policy: str | None = None
    containers: tuple[Container, ...] = Field(min_length=1)

    @field_validator("restart_policy")
    @classmethod
    def _known_policy(cls, value: str | None) -> str | None:
        if value is not None and value not in RESTART_POLICIES:
            raise ValueError(f"must be one of {', '.join(RESTART_POLICIES)}")
        return value


class PodTemplate(K8sModel):
    KNOWN_IGNORED: ClassVar[dict[str, str | None]] = {"metadata": _QUIET}

    spec: PodSpec

    @property
    def container(self) -> Container:
        """The container fedmist configures from (the first; others are reported at load time)."""
        return self.spec.containers[0]
