"""A FedAvg round's slowest link: the accepted update with the most time not spent training."""

from __future__ import annotations

from fedmist.worker.rounds.link_time import slowest_link
from fedmist.worker.rounds.server import OpenRound


def test_the_worker_longest_on_the_wire_is_named_not_the_one_that_trained_longest():
    rnd = OpenRound(number=1, selected={"fast", "slow"})
    rnd.bytes_down = 2_000_000
    rnd.compute_s = {"fast": 9.0, "slow": 1.0}
    rnd.arrivals = {"fast": (110.0, 1_000_000), "slow": (108.0, 1_000_000)}  # dispatched at 100.0
    link = slowest_link(rnd, 100.0)
    assert link == {"worker": "slow", "link_s": 7.0, "bytes": 2_000_000, "rate_bps": round(16_000_000 / 7)}
    assert slowest_link(OpenRound(number=2, selected={"a"}), 0.0) == {}
