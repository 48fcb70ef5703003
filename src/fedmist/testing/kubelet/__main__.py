"""``python -m fedmist.testing.kubelet``: run the process kubelet against a cluster until interrupted."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from fedmist.testing.kubelet import ApiClient, Kubelet, NodeConfig
from fedmist.testing.until_stopped import wait_until_stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fedmist.testing.kubelet",
        description="Run the Pods bound to the given nodes as local processes (a test kubelet).")
    parser.add_argument("--kubeconfig", type=Path, default=os.environ.get("KUBECONFIG"),
                        help="server and credentials (default: $KUBECONFIG); the kubelet needs rights on pods, "
                             "pods/status, nodes, secrets, configmaps and services")
    parser.add_argument("--node", action="append", required=True, help="a node name to serve (repeat)")
    parser.add_argument("--root", type=Path, required=True, help="folder for pod logs, volumes and node folders")
    parser.add_argument("--host-path", action="append", default=[], metavar="PATH=FOLDER",
                        help="map a hostPath prefix to a folder on every node, e.g. /data=./demo/data (repeat)")
    args = parser.parse_args(argv)
    if args.kubeconfig is None or not Path(args.kubeconfig).is_file():
        print("error: --kubeconfig (or $KUBECONFIG) must name a kubeconfig file", file=sys.stderr)
        return 2
    host_paths = {}
    for item in args.host_path:
        prefix, sep, folder = item.partition("=")
        if not sep or not prefix.startswith("/") or not folder:
            print(f"error: --host-path {item!r}: expected /PATH=FOLDER", file=sys.stderr)
            return 2
        host_paths[prefix] = Path(folder).resolve()
    try:
        client = ApiClient.from_kubeconfig(Path(args.kubeconfig))
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {args.kubeconfig}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import fedmist  # containers import this fedmist, whatever their working folder

    paths = [str(Path(fedmist.__file__).resolve().parents[1]),
             *(str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
    kubelet = Kubelet(client, args.node, NodeConfig(root=args.root.resolve(), host_paths=host_paths,
                                                    base_env=env)).start()
    wait_until_stopped()
    kubelet.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
