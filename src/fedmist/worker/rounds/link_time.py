"""Which link held a FedAvg round back: per accepted update, the time that was not the edge's training.

Why: on a slow uplink a round lasts as long as its slowest edge's download + upload, and the round's
duration alone does not say whether compute or the network was the bottleneck. For each accepted worker,
``link_s`` = (arrival of its update - dispatch of the round) - its reported training seconds: the
time its model and its update spent on the wire (and waiting for the one update slot). The round's history
entry names the worker with the largest ``link_s`` and the effective rate over it.
"""

from __future__ import annotations

from typing import Any, Protocol


class _Round(Protocol):
    selected: set[str]
    bytes_down: int
    compute_s: dict[str, float]
    arrivals: dict[str, tuple[float, int]]


def slowest_link(rnd: _Round, dispatched: float) -> dict[str, Any]:
    """``{"worker", "link_s", "bytes", "rate_bps"}`` of the accepted update that spent longest on its link,
    or ``{}`` when no update was accepted. Bytes are its update plus its share of the round's downloads."""
    if not rnd.arrivals:
        return {}
    down_each = rnd.bytes_down // max(1, len(rnd.selected))
    best: dict[str, Any] = {}
    for worker, (arrived, up_bytes) in rnd.arrivals.items():
        link_s = max(0.0, arrived - dispatched - rnd.compute_s.get(worker, 0.0))
        if not best or link_s > best["link_s"]:
            moved = up_bytes + down_each
            best = {"worker": worker, "link_s": round(link_s, 3), "bytes": moved,
                    "rate_bps": round(8 * moved / link_s) if link_s > 0 else None}
    return best
