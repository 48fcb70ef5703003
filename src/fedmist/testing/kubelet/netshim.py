"""One container's network view in the process kubelet: its binds land on the pod's own IP and cluster DNS
names resolve through the kubelet's hosts file; then the container's module runs (``-m <module> args``).

Why: pods of a cluster each have an IP of their own, so two aggregators (or a status sidecar per job) listen on
the same port without clashing; on one host, the pod IPs are loopback addresses (127.0.0.0/8 all route to
``lo``). Binding the wildcard (or loopback) address becomes binding the pod IP, and ``<service>.<namespace>``
(``.svc``, ``.svc.cluster.local``) resolves to the IP of the pod behind the Service, read at each lookup so a
recreated aggregator is found at its new IP.

Run: ``python -m fedmist.testing.kubelet.netshim --ip 127.0.100.7 --hosts hosts.json --namespace ns -- -m fedmist ...``
"""

from __future__ import annotations

import argparse
import json
import runpy
import socket
import sys
from pathlib import Path
from typing import Any

WILDCARDS = frozenset({"", "0.0.0.0", "127.0.0.1", "localhost"})


def install(ip: str, hosts: Path, namespace: str) -> None:
    real_bind = socket.socket.bind
    real_getaddrinfo = socket.getaddrinfo

    def bind(self: socket.socket, address: Any) -> None:
        if self.family == socket.AF_INET and isinstance(address, tuple) and address[0] in WILDCARDS:
            address = (ip, *address[1:])
        real_bind(self, address)

    def lookup(host: Any) -> Any:
        if not isinstance(host, str):
            return host
        name = host[:-1] if host.endswith(".") else host
        for suffix in (".svc.cluster.local", ".svc"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        if "." not in name:
            name = f"{name}.{namespace}"
        try:
            table = json.loads(hosts.read_text())
        except (OSError, ValueError):
            return host
        return table.get(name, host) if isinstance(table, dict) else host

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real_getaddrinfo(lookup(host), *args, **kwargs)

    socket.socket.bind = bind  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    real_gethostbyname = socket.gethostbyname
    socket.gethostbyname = lambda host: real_gethostbyname(lookup(host))  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="netshim", description=__doc__.splitlines()[0])
    parser.add_argument("--ip", required=True)
    parser.add_argument("--hosts", required=True, type=Path)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- -m <module> [args...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if len(command) < 2 or command[0] != "-m":
        parser.error("the container command must be `-m <module> [args...]`")
    install(args.ip, args.hosts, args.namespace)
    sys.argv = [command[1], *command[2:]]
    runpy.run_module(command[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
