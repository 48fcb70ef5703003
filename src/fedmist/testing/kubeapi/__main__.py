"""``python -m fedmist.testing.kubeapi``: serve the emulated API until interrupted, for a try by hand.

With ``--apply`` files created at start (CRDs, ``deploy/rbac.yaml``, jobs) and kubeconfigs written for the admin
and, with ``--service-account``, for a ServiceAccount bound by what was applied, e.g.::

    python -m fedmist.testing.kubeapi --kubeconfig admin.kubeconfig --apply deploy/crds/*.yaml \\
        --apply deploy/rbac.yaml --service-account fedmist-system/fedmist-operator=operator.kubeconfig
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedmist.testing.kubeapi import ApiError, KubeApiServer, User
from fedmist.testing.until_stopped import wait_until_stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fedmist.testing.kubeapi", description=__doc__.splitlines()[0],
                                     epilog="Ends on SIGINT/SIGTERM; nothing is kept.")
    parser.add_argument("--kubeconfig", type=Path, required=True, help="write the admin's kubeconfig here")
    parser.add_argument("--apply", type=Path, action="append", default=[], help="a YAML file to create (repeat)")
    parser.add_argument("--service-account", action="append", default=[], metavar="NS/NAME=KUBECONFIG",
                        help="write a kubeconfig with a token of that ServiceAccount (repeat)")
    parser.add_argument("--version", default="1.30", help="the Kubernetes version /version reports (e.g. 1.24)")
    args = parser.parse_args(argv)
    try:
        major, minor = (int(part) for part in args.version.split("."))
    except ValueError:
        print(f"error: --version {args.version!r}: expected MAJOR.MINOR", file=sys.stderr)
        return 2
    accounts = []
    for item in args.service_account:
        account, sep, path = item.partition("=")
        namespace, slash, name = account.partition("/")
        if not (sep and slash and namespace and name and path):
            print(f"error: --service-account {item!r}: expected NS/NAME=KUBECONFIG", file=sys.stderr)
            return 2
        accounts.append((namespace, name, Path(path)))
    server = KubeApiServer(version=(major, minor)).start()
    try:
        for path in args.apply:
            server.apply_file(path)
    except (OSError, ApiError) as exc:
        server.stop()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server.write_kubeconfig(args.kubeconfig)
    for namespace, name, path in accounts:
        server.write_kubeconfig(path, server.add_token(User.service_account(namespace, name)))
    print(f"serving the emulated Kubernetes API at {server.url} (admin kubeconfig: {args.kubeconfig})", flush=True)
    wait_until_stopped()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
