"""The delay relay on loopback: each direction's data arrives ``delay`` later, bytes are counted per link,
and a connection the target refuses is closed, not hung."""

from __future__ import annotations

import socket
import threading
import time

from fedmist.launch.local import free_port
from fedmist.launch.netlab.relay import DelayRelay, Route


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_a_round_trip_through_the_relay_takes_twice_its_delay_and_is_counted():
    server, target = _echo_server()
    port = free_port()
    relay = DelayRelay([Route("edge1", ("127.0.0.1", port), ("127.0.0.1", target), 0.1)]).start()
    try:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            payload = b"x" * 200_000
            started = time.monotonic()
            conn.sendall(b"ping")
            assert conn.recv(16) == b"ping"
            rtt = time.monotonic() - started
            conn.sendall(payload)
            got = 0
            while got < len(payload):
                got += len(conn.recv(65536))
        assert 0.2 <= rtt < 0.6, rtt
        deadline = time.monotonic() + 5
        while relay.counters["edge1"].bytes_down < len(payload) + 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        counters = relay.snapshot()["edge1"]
        assert counters["bytes_up"] == counters["bytes_down"] == len(payload) + 4
        assert counters["connections"] == 1
    finally:
        relay.stop()
        server.close()


def test_a_refused_target_closes_the_edge_side():
    dead = free_port()  # nothing listens there
    port = free_port()
    relay = DelayRelay([Route("edge1", ("127.0.0.1", port), ("127.0.0.1", dead), 0.0)]).start()
    try:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.settimeout(5)
            assert conn.recv(16) == b""  # closed by the relay, not left hanging
        assert relay.counters["edge1"].open == 0
    finally:
        relay.stop()
