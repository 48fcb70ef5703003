"""The aggregator pod's status sidecar: serves the aggregator's report file over HTTP for the operator.

Why a sidecar and not the aggregator itself: the report is the very dict the local launcher reads from
``FEDMIST_STATUS_FILE`` (``fedmist.worker.report``), so the worker code needs no Kubernetes knowledge and no
API credentials. ``GET /report`` returns the file as written (503 until the first write). On SIGTERM (the
kubelet stops a native sidecar once the aggregator exits) it keeps serving until the final report has been
fetched once, or ``--linger`` seconds passed, so the operator can still read the final metrics. With
``--exit-after-final`` (servers before 1.29, where it runs as a plain container the kubelet never stops) it
exits by itself once the final report was fetched, so the aggregator's pod can complete.

Run: ``python -m fedmist.launch.kube.statusd --file /var/run/fedmist/report.json --port 7364``.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Final

TERMINAL: Final = ("Succeeded", "Failed")


class ReportServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], report: Path) -> None:
        super().__init__(address, _Handler)
        self.report = report
        self.final_served = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    server: ReportServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.split("?")[0] not in ("/report", "/healthz"):
            self._reply(404, b'{"error": "not found"}')
            return
        if self.path.startswith("/healthz"):
            self._reply(200, b'{"ok": true}')
            return
        try:
            body = self.server.report.read_bytes()
            phase = json.loads(body).get("phase")
        except (OSError, ValueError):
            self._reply(503, b'{"error": "no report yet"}')
            return
        self._reply(200, body)
        if phase in TERMINAL:
            self.server.final_served.set()

    def _reply(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet: polled every few seconds
        return


def serve(report: Path, port: int, linger_s: float, host: str = "0.0.0.0", exit_after_final: bool = False) -> int:
    server = ReportServer((host, port), report)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        while not stop.wait(0.5):
            if exit_after_final and server.final_served.is_set():
                break
    except KeyboardInterrupt:
        pass
    deadline = time.monotonic() + linger_s
    while not server.final_served.is_set() and time.monotonic() < deadline:
        time.sleep(0.2)
    server.shutdown()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fedmist-statusd", description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True, type=Path)
    parser.add_argument("--port", type=int, default=7364)
    parser.add_argument("--linger", type=float, default=20.0, help="seconds to wait for the final fetch on SIGTERM")
    parser.add_argument("--exit-after-final", action="store_true",
                        help="exit once the final report was fetched (a plain container: Kubernetes < 1.29)")
    args = parser.parse_args(argv)
    return serve(args.file, args.port, args.linger, exit_after_final=args.exit_after_final)


if __name__ == "__main__":
    raise SystemExit(main())
