"""The fault proxy itself, against a plain TCP echo server: it forwards, counts, cuts, refuses and truncates."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from fedmist.testing.fault_proxy import FaultProxy


@pytest.fixture
def echo_port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


def _echo(conn: socket.socket) -> None:
    with conn:
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass


def _roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_forwards_and_counts_both_ways(echo_port):
    proxy = FaultProxy(echo_port).start()
    try:
        assert _roundtrip(proxy.port, b"x" * 100_000) == b"x" * 100_000
        time.sleep(0.05)
        assert proxy.counters.bytes_up == 100_000 and proxy.counters.bytes_down == 100_000
        assert proxy.counters.accepted == 1
    finally:
        proxy.stop()


def test_drop_cuts_live_connections_and_refuses_new_ones_for_a_while(echo_port):
    proxy = FaultProxy(echo_port).start()
    try:
        live = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        live.sendall(b"hi")
        assert live.recv(10) == b"hi"
        proxy.drop_for(0.5)
        with pytest.raises(ConnectionError):
            live.recv(10)
        live.close()
        with pytest.raises(ConnectionError):  # accepted, then reset at once
            _roundtrip(proxy.port, b"during")
        time.sleep(0.6)
        assert _roundtrip(proxy.port, b"after") == b"after"
        assert proxy.counters.cut == 1 and proxy.counters.refused == 1
    finally:
        proxy.stop()


def test_truncate_passes_exactly_the_budget_then_cuts(echo_port):
    proxy = FaultProxy(echo_port).start()
    try:
        proxy.truncate_after(1000)
        with pytest.raises(ConnectionError):
            _roundtrip(proxy.port, b"y" * 5000)
        assert proxy.counters.bytes_up == 1000 and proxy.counters.cut == 1
        assert _roundtrip(proxy.port, b"z" * 5000) == b"z" * 5000  # one connection only
    finally:
        proxy.stop()
