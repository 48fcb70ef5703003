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
