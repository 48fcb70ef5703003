"""A pre-warmed parent for the local launcher's worker processes: it imports torch once and forks workers.

Why: every worker otherwise starts a fresh interpreter and imports torch itself. On the 2-core machine one
``import torch`` takes 3.6 s and three at once (an aggregator and two edges) 5.7 s, the largest part of the
demo job's start-up. The zygote pays it once, while the launcher reads the manifests on the other core, and
then each worker is an ``os.fork()`` of a process that already has torch loaded (milliseconds).

Each child is still its own OS process with its own PID, environment (the worker's env contract), working
folder, log file and exit code, and it runs the same entrypoint that a container runs (``fedmist worker
aggregate|train``), called directly: :func:`fedmist.worker.main.run_worker`. The zygote starts workers and
nothing else (not the CLI: it sits below it). ``fedmist run --no-prefork`` starts workers as fresh
interpreters instead.

Protocol, over the zygote's private stdin/stdout pipes, one JSON object per line (no pickle):
launcher -> zygote ``{"argv": ["worker", "aggregate"|"train", *args], "env": {...}, "log": path, "cwd": path,
"exit_dir": path}`` (``argv`` as ``fedmist`` would take it); zygote -> launcher
``{"ready": true}`` once preloaded, ``{"spawned": pid}`` or ``{"error": "..."}`` per request in order, and
``{"exited": pid, "code": n}`` when a child ends (``n`` as ``subprocess`` reports it: negative for a signal).
The zygote exits when its stdin closes; children it started keep running, as ``subprocess`` children would.
Each child also writes its exit code to ``<exit_dir>/<pid>`` as it ends, so a launcher whose zygote died (the
OOM killer, say) still learns how its workers ended instead of counting each as failed.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import selectors
import signal
import sys
import traceback
from typing import Any

from fedmist.launch.netlab.nsenter import enter_from_env

# What a worker imports before its first real work; each module that fails to import is simply left to the
# worker (which then reports the error itself). Detection runtimes are not preloaded: ultralytics reads its
# settings folder from the environment at import time, and that environment is the worker's, not ours.
PRELOAD = (
    "torch",
    "torch.nn.functional",
    "numpy",
    "fedmist.worker.main",
    "fedmist.worker.mistnet.aggregator",
    "fedmist.worker.mistnet.trainer",
    "fedmist.worker.rounds.aggregator",
    "fedmist.worker.rounds.trainer",
)
ROLES = {"aggregate": "aggregator", "train": "trainer"}  # argv[1] -> run_worker's role, as `fedmist worker` maps it
MAX_REQUEST_BYTES = 4 << 20  # an env and an argv; anything bigger is not from the launcher
POLL_S = 0.05


def _write(line: dict[str, Any]) -> None:
    os.write(1, (json.dumps(line) + "\n").encode())


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


def worker_argv(argv: object) -> tuple[str, list[str]]:
    """``["worker", "aggregate"|"train", *args]`` -> ``(role, args)`` for :func:`run_worker`; anything else
    raises ``ValueError``: the zygote forks workers only."""
    if (not isinstance(argv, list) or len(argv) < 2 or argv[0] != "worker" or argv[1] not in ROLES
            or not all(isinstance(a, str) for a in argv)):
        raise ValueError(f"the zygote starts workers only: argv must be ['worker', 'aggregate'|'train', ...], "
                         f"got {str(argv)[:200]}")
    return ROLES[argv[1]], list(argv[2:])


def _run_child(request: dict[str, Any]) -> None:
    """In the forked child: become the worker (fds, env, folder) and run its entrypoint; never returns."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        enter_from_env()  # behind an emulated link (fedmist run --topology): the edge's own network namespace
        extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[:0] = [p for p in extra if p not in sys.path]  # PYTHONPATH is only read at interpreter start
        sys.argv = ["fedmist", *request["argv"]]
        role, args = worker_argv(request["argv"])
        from fedmist.worker.main import run_worker

        code = run_worker(role, args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - a child must always end in os._exit, never back in the zygote loop
        traceback.print_exc()
        code = 1
    finally:
        try:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            _record_exit(request.get("exit_dir"), code if isinstance(code, int) else 1)
        finally:
            os._exit(code if isinstance(code, int) else 1)


def _record_exit(exit_dir: object, code: int) -> None:
    """Leave ``<exit_dir>/<pid>`` holding the exit code. No rename needed: a reader that finds it half-written
    (empty) sees this process still alive and simply asks again."""
    if not isinstance(exit_dir, str) or not exit_dir:
        return
    try:
        with open(os.path.join(exit_dir, str(os.getpid())), "w") as out:
            out.write(str(code))
    except OSError:
        pass  # the launcher has gone (and removed the folder): nobody is left to tell


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _write({"exited": pid, "code": _exit_code(status)})


def _spawn(line: bytes) -> None:
    try:
        request = json.loads(line)
        if not isinstance(request, dict) or not isinstance(request.get("argv"), list):
            raise ValueError("a request needs argv, env, log and cwd")
        for key in ("env", "log", "cwd"):
            if key not in request:
                raise ValueError(f"a request needs {key}")
        worker_argv(request["argv"])
    except ValueError as exc:
        _write({"error": str(exc)})
        return
    pid = os.fork()
    if pid == 0:
        _run_child(request)
    _write({"spawned": pid})


def serve() -> None:
    """The zygote's main loop: preload, then fork on each request and report children's exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the launcher and the workers, not us
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - the worker imports it again and reports the error itself
            print(f"zygote: preload of {name} failed: {exc}", file=sys.stderr)
    _write({"ready": True})
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    pending = b""
    while True:
        _reap()
        if not selector.select(POLL_S):
            continue
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            _spawn(line)
        if len(pending) > MAX_REQUEST_BYTES:
            _write({"error": "request too large"})
            pending = b""
    _reap()
    os._exit(0)  # skip the interpreter's teardown of torch (a noticeable fraction of a second at job end)


if __name__ == "__main__":
    serve()
