"""From a Pod to what the process kubelet runs: each container's argv, env and log file.

Containers have no mount namespace here, so a volume is a host folder and every env value and argument that
names a path under a ``mountPath`` is rewritten to the folder behind it (``/data/edge1`` -> the test's
folder); ``hostPath`` maps through ``host_paths`` (shared folders, like a dataset every node sees) or else
``<root>/nodes/<node><path>`` (per node, so a trainer's state survives its pod on that node only).
``secretKeyRef``/``configMapKeyRef`` are read from the API and ``fieldRef`` resolved as the kubelet does.
"""

from __future__ import annotations

import base64
import posixpath
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedmist.testing.kubelet.client import ApiClient

NETSHIM = "fedmist.testing.kubelet.netshim"


class NotReady(Exception):
    """The pod cannot start yet (missing Secret, hostPath ``Directory`` absent): ``reason``, then message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class NodeConfig:
    root: Path
    host_paths: Mapping[str, Path] = field(default_factory=dict)
    base_env: Mapping[str, str] = field(default_factory=dict)

    def host_dir(self, node: str, path: str) -> Path:
        path = posixpath.normpath(path)
        for prefix in sorted(self.host_paths, key=len, reverse=True):
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return Path(self.host_paths[prefix]) / path[len(prefix):].lstrip("/")
        return self.root / "nodes" / node / path.lstrip("/")


@dataclass(frozen=True)
class ContainerRun:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    kind: str  # "init" (runs to completion first), "sidecar" (a native one) or "main"

    @property
    def sidecar(self) -> bool:
        return self.kind == "sidecar"


def pod_dir(config: NodeConfig, pod: Mapping[str, Any]) -> Path:
    meta = pod["metadata"]
    return config.root / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"


def _decode(obj: Mapping[str, Any] | None, key: str, kind: str, name: str) -> str:
    if obj is None:
        raise NotReady("CreateContainerConfigError", f'{kind} "{name}" not found')
    data = obj.get("data") or {}
    if key not in data:
        raise NotReady("CreateContainerConfigError", f"couldn't find key {key} in {kind} {name}")
    return base64.b64decode(data[key]).decode() if kind == "Secret" else str(data[key])


def _field(pod: Mapping[str, Any], path: str, ip: str) -> str:
    meta = pod["metadata"]
    for prefix, source in (("metadata.labels['", "labels"), ("metadata.annotations['", "annotations")):
        if path.startswith(prefix):
            return str((meta.get(source) or {}).get(path[len(prefix):-2], ""))
    values = {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"], "metadata.uid": meta["uid"],
              "spec.nodeName": pod["spec"].get("nodeName", ""), "status.podIP": ip, "status.hostIP": "127.0.0.1",
              "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default")}
    if path not in values:
        raise NotReady("CreateContainerConfigError", f"unsupported fieldRef {path}")
    return values[path]


def volumes(config: NodeConfig, client: ApiClient, pod: Mapping[str, Any]) -> dict[str, Path]:
    """Volume name -> host folder, made ready (emptyDir made, secret files written, hostPath checked)."""
    node, namespace = pod["spec"]["nodeName"], pod["metadata"]["namespace"]
    result: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        if "hostPath" in volume:
            folder = config.host_dir(node, volume["hostPath"]["path"])
            kind = volume["hostPath"].get("type", "")
            if kind == "Directory" and not folder.is_dir():
                raise NotReady("ContainerCreating", f'MountVolume.SetUp failed for volume "{name}": hostPath type '
                                                    f"check failed: {volume['hostPath']['path']} is not a directory")
            if kind in ("DirectoryOrCreate", ""):
                folder.mkdir(parents=True, exist_ok=True)
        elif "emptyDir" in volume:
            folder = pod_dir(config, pod) / "volumes" / name
            folder.mkdir(parents=True, exist_ok=True)
        elif "secret" in volume or "configMap" in volume:
            kind, source = ("Secret", volume["secret"]) if "secret" in volume else ("ConfigMap", volume["configMap"])
            obj_name = source.get("secretName") or source.get("name")
            obj = client.get(namespace, "secrets" if kind == "Secret" else "configmaps", obj_name)
            items = source.get("items") or [{"key": k, "path": k} for k in ((obj or {}).get("data") or {})]
            folder = pod_dir(config, pod) / "volumes" / name
            folder.mkdir(parents=True, exist_ok=True)
            for item in items:
                target = folder / item["path"]
                target.write_text(_decode(obj, item["key"], kind, obj_name))
                target.chmod(source.get("defaultMode", 0o644) & 0o777)
        else:
            raise NotReady("ContainerCreating", f"volume {name}: only hostPath, emptyDir, secret, configMap")
        result[name] = folder
    return result


def container_runs(config: NodeConfig, client: ApiClient, pod: Mapping[str, Any], ip: str, hosts: Path
                   ) -> list[ContainerRun]:
    """The init containers in order (native sidecars, ``restartPolicy: Always``, among them), then the containers."""
    folders = volumes(config, client, pod)
    spec = pod["spec"]
    runs = []
    for container, kind in [*((c, "sidecar" if c.get("restartPolicy") == "Always" else "init")
                              for c in spec.get("initContainers") or []),
                            *((c, "main") for c in spec.get("containers") or [])]:
        mounts = sorted(((m["mountPath"].rstrip("/") or "/", folders[m["name"]] / m.get("subPath", ""))
                         for m in container.get("volumeMounts") or []), key=lambda m: len(m[0]), reverse=True)

        def rewrite(value: str, mounts: list[tuple[str, Path]] = mounts) -> str:
            for mount_path, folder in mounts:
                if value == mount_path or value.startswith(mount_path + "/"):
                    return str(folder) + value[len(mount_path):]
            return value

        env = dict(config.base_env)
        for item in container.get("env") or []:
            env[item["name"]] = rewrite(_env_value(client, pod, item, ip))
        argv = [rewrite(part) for part in [*(container.get("command") or []), *(container.get("args") or [])]]
        runs.append(ContainerRun(container["name"], _python_argv(argv, ip, hosts, pod), env,
                                 pod_dir(config, pod) / f"{container['name']}.log", kind))
    return runs


def _env_value(client: ApiClient, pod: Mapping[str, Any], item: Mapping[str, Any], ip: str) -> str:
    source = item.get("valueFrom")
    if not source:
        return str(item.get("value", ""))
    namespace = pod["metadata"]["namespace"]
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        return _decode(client.get(namespace, "secrets", ref["name"]), ref["key"], "Secret", ref["name"])
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        return _decode(client.get(namespace, "configmaps", ref["name"]), ref["key"], "ConfigMap", ref["name"])
    if "fieldRef" in source:
        return _field(pod, source["fieldRef"]["fieldPath"], ip)
    raise NotReady("CreateContainerConfigError", f"env {item['name']}: unsupported valueFrom")


def _python_argv(argv: list[str], ip: str, hosts: Path, pod: Mapping[str, Any]) -> list[str]:
    """The image's entry points as this interpreter: ``fedmist ...`` and ``python -m ...`` (what the operator
    renders); anything else cannot run without the image."""
    if argv[:1] == ["fedmist"]:
        module = ["-m", "fedmist", *argv[1:]]
    elif argv[:1] in (["python"], ["python3"]) and argv[1:2] == ["-m"]:
        module = argv[1:]
    else:
        raise NotReady("CreateContainerConfigError", f"cannot run {argv[:1]} outside its image")
    return [sys.executable, "-m", NETSHIM, "--ip", ip, "--hosts", str(hosts), "--namespace",
            pod["metadata"]["namespace"], "--", *module]
