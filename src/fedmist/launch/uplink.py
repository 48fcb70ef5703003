"""What an edge's upload is doing on its link: rate, bytes arrived of total, and time left (MistNet).

Why measured at the aggregator: on a slow link the edge's socket buffers accept megabytes long before
they cross the link, so what the edge has *written* runs ahead of the truth. The aggregator's report says
which records it has stored (``received``) and how many bytes it read from the edge (``bytes_up``); the edge
says how big its whole upload is (``upload_total``). The launcher samples these on every poll, and the
rate is the slope over the last ``WINDOW_S`` seconds (a window, so a stall shows as a falling rate, not as
the whole upload's average).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

WINDOW_S = 5.0
UPLOADING = frozenset({"Extracting", "Uploading"})


class UplinkMeter:
    """Per edge: a short history of (time, bytes stored at the aggregator), from which rate and ETA follow."""

    def __init__(self) -> None:
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def observe(self, aggregator: str, reports: dict[str, dict[str, Any]], now: float | None = None) -> None:
        """Add each uploading edge's figures as ``reports[edge]["upload"]`` (the launcher's copy of the report;
        status.json and the progress view read it there)."""
        now = time.monotonic() if now is None else now
        for edge, seen in (reports.get(aggregator, {}).get("workers") or {}).items():
            report = reports.get(edge)
            if report is None or not isinstance(seen, dict) or "received" not in seen:
                continue
            figures = self._figures(edge, seen, report, now)
            if figures:
                report["upload"] = figures

    def _figures(self, edge: str, seen: dict[str, Any], report: dict[str, Any], now: float) -> dict[str, Any]:
        samples, received = int(seen.get("samples") or report.get("samples") or 0), int(seen.get("received") or 0)
        total = int(report.get("upload_total") or 0)
        if not samples or not total:
            return {}
        sent = total * min(received, samples) // samples  # records stored, as bytes of the whole upload
        history = self._samples.setdefault(edge, deque())
        history.append((now, sent))
        while len(history) > 2 and now - history[1][0] >= WINDOW_S:
            history.popleft()
        (t0, b0), (t1, b1) = history[0], history[-1]
        rate = 8 * (b1 - b0) / (t1 - t0) if t1 - t0 >= 0.5 else None
        done = seen.get("phase") not in UPLOADING and received >= samples
        eta = 0.0 if done else (round(8 * (total - sent) / rate, 1) if rate else None)
        return {"bytes_sent": sent, "bytes_total": total, "rate_bps": None if rate is None else round(rate),
                "eta_s": eta, "wire_bytes": int(seen.get("bytes_up") or 0)}


def upload_text(upload: dict[str, Any]) -> str:
    """``312 kB of 444 kB at 0.93 Mbit/s, ETA 1.1 s`` for the progress line."""
    text = f"{upload['bytes_sent'] / 1e3:.0f} kB of {upload['bytes_total'] / 1e3:.0f} kB"
    if upload.get("rate_bps") is not None:
        text += f" at {upload['rate_bps'] / 1e6:.2f} Mbit/s"
    if upload.get("eta_s") is not None:
        text += f", ETA {upload['eta_s']:.0f} s"
    return text


def slowest_text(entry: dict[str, Any]) -> str:
    """A FedAvg round's slowest link (worker/rounds/link_time.py) for the progress line."""
    link = entry.get("slowest_link") or {}
    if not link:
        return ""
    rate = f" ({link['rate_bps'] / 1e6:.2f} Mbit/s)" if link.get("rate_bps") else ""
    return f"slowest link {link['worker']}: {link['link_s']:.1f} s on the wire{rate}"
