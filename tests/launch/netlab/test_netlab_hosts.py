"""Hosts and links made for real (CI runs as root): the shaped rate and the added delay measured through
them, an outage that stops traffic and lifts, and nothing left behind -- also a dead run's leftovers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from fedmist.launch.netlab.hosts import CLOUD_IP, Netlab, sweep_stale
from fedmist.launch.netlab.nsenter import enter_netns
from fedmist.launch.netlab.topology import Link, Outage, Topology

PORT = 7400
REPO = Path(__file__).resolve().parents[3]


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _in_netns(netns: str, work, *args):
    """Run ``work(*args)`` in a thread that entered ``netns`` (a namespace is per thread); its result."""
    box: dict[str, object] = {}

    def body() -> None:
        try:
            enter_netns(netns)
            box["value"] = work(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(60)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


def _echo_listener() -> socket.socket:
    server = socket.create_server((CLOUD_IP, PORT))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data[:1])  # one byte back per read: the uplink is what is measured


def _upload(host: str, nbytes: int) -> tuple[float, float]:
    """(seconds to connect and make a 1-byte round trip, seconds to push ``nbytes`` and see them all acknowledged)."""
    started = time.monotonic()
    with socket.create_connection((host, PORT), timeout=30) as conn:
        conn.sendall(b"p")
        conn.recv(1)
        rtt = time.monotonic() - started
        started = time.monotonic()
        conn.sendall(b"x" * nbytes)
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(65536):
            pass
        return rtt, time.monotonic() - started


def test_the_link_has_the_rate_and_delay_it_was_given_and_is_gone_after():
    topology = Topology(default=Link(up_bps=4_000_000, down_bps=20_000_000, delay_s=0.05))
    with Netlab(topology, ["edge1"]) as lab:
        made = {lab.hub, lab.cloud, lab.netns_of("edge1")}
        assert made <= _namespaces()
        server = _in_netns(lab.cloud, _echo_listener)
        lab.start(PORT)
        try:
            rtt, seconds = _in_netns(lab.netns_of("edge1"), _upload, lab.dial_host("edge1"), 600_000)
        finally:
            server.close()
        rate = 600_000 * 8 / seconds
        assert 0.1 <= rtt < 0.5, rtt  # 50 ms each way, added by the relay (the connect is not delayed)
        assert 0.7 * 4e6 <= rate <= 1.05 * 4e6, rate
        assert lab.snapshot()["edges"]["edge1"]["bytes_up"] == 600_001
    assert not made & _namespaces()
    print(f"\n[netlab] 4 Mbit/s + 50 ms link: measured {rate / 1e6:.2f} Mbit/s, round trip {rtt * 1000:.0f} ms")


def test_an_outage_stops_the_link_for_its_time_and_then_it_carries_again():
    topology = Topology(default=Link(delay_s=0.0, outages=(Outage(0.3, 1.5),)))
    with Netlab(topology, ["edge1"]) as lab:
        server = _in_netns(lab.cloud, _echo_listener)
        lab.start(PORT)
        time.sleep(0.5)  # inside the outage
        try:
            rtt, _ = _in_netns(lab.netns_of("edge1"), _upload, lab.dial_host("edge1"), 1000)
        finally:
            server.close()
        events = [e["event"] for e in lab.snapshot()["events"]]
    assert rtt >= 1.0, rtt  # the SYN waited for the link to come back
    assert events == ["link down", "link up"]


def test_a_dead_runs_namespaces_are_swept():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    name = f"fmlab{dead.pid}-hub"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert name in sweep_stale()
        assert name not in _namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_without_root_the_cli_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    """The real CLI entry in this process, with the effective UID of a normal user (the venv of CI lives under
    /root, so a real unprivileged process could not even start it)."""
    from fedmist.cli import main

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    job = REPO / "examples" / "mnist-mistnet" / "job.yaml"
    code = main(["run", "-f", str(job), "--workdir", str(tmp_path / "run"), "--link", "up=1mbit", "--no-prefork",
                 "--path-map", f"/data={tmp_path}", "--path-map", f"/pretrained={tmp_path}",
                 "--path-map", f"/model={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert err[-1].startswith("error: --topology/--link need root"), err
    assert not any(name.startswith(f"fmlab{os.getpid()}-") for name in _namespaces())
