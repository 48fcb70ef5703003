"""Commands for a Kubernetes cluster: ``render`` (the objects of a job, as YAML) and ``operator`` (kopf)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedmist.cli.common import Subparsers, UsageError, add_command, add_job_args


def cmd_render(args: argparse.Namespace) -> int:
    """Print the Kubernetes objects the operator would create for the job (multi-document YAML)."""
    import os
    import secrets

    import yaml

    from fedmist.api import parse_path_map
    from fedmist.launch.kube.render import RenderOptions, credential_secrets, plain_ws_warnings, render_job
    from fedmist.launch.kube.source import from_files

    loaded = from_files([Path(f) for f in args.file], parse_path_map(args.path_map), args.job, os.environ)
    for warning in [*loaded.bundle.warnings, *plain_ws_warnings(loaded.job)]:
        print(f"warning: {warning}", file=sys.stderr)
    options = RenderOptions(uid=args.uid, token=None if args.no_token_secret else secrets.token_urlsafe(32),
                            image=args.image, owner_refs=not args.no_owner_refs, spec_hash=loaded.spec_hash)
    objects = render_job(loaded.job, loaded.raw_spec, credential_secrets(loaded.bundle, loaded.job), options)
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False))
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    """Run the Kubernetes operator (kopf) for FederatedLearningJobs."""
    import importlib.util
    import logging

    if importlib.util.find_spec("kopf") is None:
        raise UsageError("fedmist operator needs kopf: pip install 'fedmist[kube]'")
    from fedmist.launch.kube.login import NO_CREDENTIALS, Credentials, LoginFailed, credential_sources
    from fedmist.launch.kube.operator import run_operator

    if not credential_sources():
        raise UsageError(NO_CREDENTIALS)
    credentials = Credentials()
    try:
        credentials.login()
    except LoginFailed as exc:
        raise UsageError(f"cannot log in to Kubernetes: {exc}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_operator(args.namespace, args.interval, args.image, credentials)


def add_commands(sub: Subparsers) -> None:
    """Register ``render`` and ``operator``."""
    from fedmist.launch.kube.names import DEFAULT_IMAGE, UID_PLACEHOLDER

    render = add_command(sub, "render", cmd_render,
                         "print the Kubernetes objects (Pods, Service, Secret) of a job as YAML")
    add_job_args(render)
    render.add_argument("--image", help="use this image for every worker (e.g. when the manifest names a "
                                        "Sedna example image, which does not contain fedmist)")
    render.add_argument("--uid", default=UID_PLACEHOLDER,
                        help="the FederatedLearningJob's uid for ownerReferences (kubectl get fl NAME -o "
                             "jsonpath='{.metadata.uid}'); default: %(default)s, a placeholder")
    render.add_argument("--no-owner-refs", action="store_true",
                        help="omit ownerReferences (objects then outlive the job; needed when it is not applied)")
    render.add_argument("--no-token-secret", action="store_true",
                        help="do not print the job token Secret (create <job>-fedmist-token yourself)")

    operator = add_command(sub, "operator", cmd_operator,
                           "run the Kubernetes operator (needs: pip install 'fedmist[kube]')")
    operator.epilog = (
        "Run the FederatedLearningJob operator (kopf). Credentials: in a pod, its ServiceAccount (deploy/); "
        "elsewhere KUBECONFIG (or ~/.kube/config): its current context's server, CA, token or client "
        "certificate serve both kopf's watches and the operator's own requests, so no kubectl proxy is needed: "
        "KUBECONFIG=~/.kube/config fedmist operator --namespace default")
    operator.add_argument("--namespace", help="watch only this namespace (default: all)")
    operator.add_argument("--interval", type=float, default=10.0, help="seconds between progress polls of a job")
    operator.add_argument("--image", default=DEFAULT_IMAGE,
                          help="image for workers without one, and the status sidecar")
