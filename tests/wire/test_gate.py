"""Connection admission: exact refusals for floods and for too many open connections."""

from fedmist.transport.gate import ConnectionGate


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_per_address_refills_over_time():
    clock = Clock()
    gate = ConnectionGate(max_open=100, rate_per_s=2.0, burst=3, clock=clock)
    assert [gate.admit("10.0.0.1") for _ in range(3)] == [None, None, None]
    assert gate.admit("10.0.0.1") == "10.0.0.1 opens connections faster than 2/s"
    assert gate.admit("127.0.0.2") is None  # another address has its own bucket
    clock.now = 0.5  # one token back
    assert gate.admit("10.0.0.1") is None
    assert gate.admit("10.0.0.1") is not None


def test_cap_on_open_connections_and_release():
    gate = ConnectionGate(max_open=2, rate_per_s=100, burst=100)
    assert gate.admit("a") is None and gate.admit("b") is None
    assert gate.admit("c") == "too many open connections (2)"
    gate.release()
    assert gate.admit("c") is None


def test_a_job_of_many_workers_on_one_address_is_admitted_at_once():
    """A local job's 100 trainers all dial from 127.0.0.1 within a second: the gate fitted to the job admits every
    one of them, and still refuses the next burst (a reconnect storm) from that address."""
    clock = Clock()
    gate = ConnectionGate(clock=clock).fit(100)
    assert (gate.max_open, gate.burst) == (208, 104)
    assert all(gate.admit("127.0.0.1") is None for _ in range(104))
    assert gate.admit("127.0.0.1") == "127.0.0.1 opens connections faster than 5/s"
    assert ConnectionGate().fit(2).max_open == 64 and ConnectionGate().fit(2).burst == 20  # never below the defaults
