"""Hosts and links for ``fedmist run --topology``: one network namespace per worker, shaped veth links, loss
and outages by nftables, and the delay relay -- made at start and all removed at the end (docs/DESIGN.md
section 7).

Layout (every name starts ``fmlab<launcher pid>-``, so two runs never collide and a run's leftovers are
recognisable by a dead PID)::

    edge i netns  eth0 10.213.i.2 --veth-- l<i> 10.213.i.1  hub netns  l0 10.213.0.1 --veth-- eth0 10.213.0.2 cloud netns
      tbf (uplink) + nft loss/outage        tbf (downlink)   delay relay                        aggregator

Each edge dials the relay on the hub end of its own link; the relay forwards to the aggregator in the cloud
namespace. Nothing is made in the host's own namespace, so removing the namespaces removes every interface,
qdisc and nft table with them; teardown runs in a ``finally`` and on SIGTERM/SIGINT.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from types import FrameType
from typing import Any

from fedmist.launch.netlab.relay import DelayRelay, Route
from fedmist.launch.netlab.topology import Link, Topology, TopologyError

PREFIX = "fmlab"
SUBNET = "10.213"
CLOUD_IP = f"{SUBNET}.0.2"
MAX_EDGES = 250
COMMAND_TIMEOUT_S = 20.0
NFT_TABLE = "fedmist"
OUTAGE_POLL_S = 0.05


class NetlabError(RuntimeError):
    """Setting up the emulated links failed; one line naming the command and its error."""


def _run(*argv: str, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetlabError(f"{' '.join(argv[:6])}: {exc}") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["failed"]
        raise NetlabError(f"{' '.join(argv)}: {lines[0]}")
    return done.stdout


def check_can_build(topology: Topology) -> None:
    """Root and the tools, before anything is made: each missing piece is a one-line configuration error."""
    if os.geteuid() != 0:
        raise TopologyError("--topology/--link need root (network namespaces, tc and nftables); "
                            "run as root or without them")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise TopologyError(f"--topology needs `{tool}` (iproute2) on PATH")
    links = [topology.default, *topology.edges.values()]
    if any(link.loss_pct or link.outages for link in links) and shutil.which("nft") is None:
        raise TopologyError("--topology: loss and outages need `nft` (apt-get install nftables)")


def sweep_stale() -> list[str]:
    """Remove namespaces a run left behind when it was SIGKILLed (their launcher PID is gone)."""
    removed = []
    for line in _run("ip", "netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        match = re.fullmatch(rf"{PREFIX}(\d+)-\w+", name)
        if match and not _alive(int(match.group(1))):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=COMMAND_TIMEOUT_S)
            removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tbf(netns: str, dev: str, bps: int) -> None:
    """A token bucket on ``dev``'s egress: ``bps`` bit/s, a burst of ~20 ms (at least a few packets) and a
    queue of ~200 ms, so the rate is what the link promises and a full queue drops as a router's would."""
    burst = max(4_500, bps // 8 // 50)
    limit = max(3 * burst, bps // 8 // 5)
    _run("ip", "netns", "exec", netns, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{bps}bit",
         "burst", str(burst), "limit", str(limit))


class Netlab:
    """The namespaces, links and relay of one run. Use as a context manager around the job."""

    def __init__(self, topology: Topology, trainers: list[str], *, pid: int | None = None) -> None:
        if len(trainers) > MAX_EDGES:
            raise TopologyError(f"--topology supports at most {MAX_EDGES} edges, the job has {len(trainers)}")
        topology.check_workers(trainers)
        self.topology = topology
        self.trainers = list(trainers)
        self.tag = f"{PREFIX}{pid or os.getpid()}"
        self.hub = f"{self.tag}-hub"
        self.cloud = f"{self.tag}-cloud"
        self.edges = {name: (i + 1, f"{self.tag}-e{i + 1}") for i, name in enumerate(trainers)}
        self.relay: DelayRelay | None = None
        self.events: list[dict[str, Any]] = []  # outages as they happened (time.time(), edge, what)
        self._made: list[str] = []
        self._stop = threading.Event()
        self._scheduler: threading.Thread | None = None
        self._previous: dict[int, Any] = {}

    # -- addresses the launcher needs ----------------------------------------------------------------------
    @property
    def agg_host(self) -> str:
        return CLOUD_IP

    def netns_of(self, worker: str) -> str:
        return self.edges[worker][1] if worker in self.edges else self.cloud

    def dial_host(self, worker: str) -> str:
        """Where ``worker`` dials the aggregator: the relay on the hub end of its own link."""
        return f"{SUBNET}.{self.edges[worker][0]}.1"

    def server_hosts(self) -> list[str]:
        """Every address the aggregator is dialled at (for its TLS certificate)."""
        return [CLOUD_IP, *(self.dial_host(w) for w in self.trainers)]

    def link_of(self, worker: str) -> Link:
        return self.topology.link_for(worker)

    # -- lifecycle -----------------------------------------------------------------------------------------
    def __enter__(self) -> "Netlab":
        self._trap_signals()
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        """Make the hub, the cloud host and one host per edge, with their links, shaping and rules."""
        check_can_build(self.topology)
        sweep_stale()
        for name in (self.hub, self.cloud, *(ns for _, ns in self.edges.values())):
            _run("ip", "netns", "add", name)
            self._made.append(name)
            _run("ip", "-n", name, "link", "set", "lo", "up")
        self._veth(0, self.cloud)
        for worker, (index, netns) in self.edges.items():
            self._veth(index, netns)
            link = self.link_of(worker)
            if link.up_bps:
                _tbf(netns, "eth0", link.up_bps)
            if link.down_bps:
                _tbf(self.hub, f"l{index}", link.down_bps)
            if link.loss_pct or link.outages:
                self._nft(netns, link.loss_pct)

    def _veth(self, index: int, netns: str) -> None:
        _run("ip", "-n", self.hub, "link", "add", f"l{index}", "type", "veth", "peer", "name", "eth0", "netns", netns)
        _run("ip", "-n", self.hub, "addr", "add", f"{SUBNET}.{index}.1/24", "dev", f"l{index}")
        _run("ip", "-n", netns, "addr", "add", f"{SUBNET}.{index}.2/24", "dev", "eth0")
        _run("ip", "-n", self.hub, "link", "set", f"l{index}", "up")
        _run("ip", "-n", netns, "link", "set", "eth0", "up")

    def _nft(self, netns: str, loss_pct: float) -> None:
        """Random loss on eth0 both ways, and an empty ``outage`` chain an outage fills with one drop rule."""
        loss = ""
        if loss_pct:
            per_mille = max(1, round(loss_pct * 10))
            loss = f'iifname "eth0" numgen random mod 1000 < {per_mille} drop\n'
        rules = (f"table inet {NFT_TABLE} {{\n"
                 f"  chain outage {{ }}\n"
                 f"  chain in {{ type filter hook input priority 0; policy accept;\n"
                 f'    iifname "eth0" jump outage\n    {loss}  }}\n'
                 f"  chain out {{ type filter hook output priority 0; policy accept;\n"
                 f'    oifname "eth0" jump outage\n    {loss.replace("iifname", "oifname")}  }}\n'
                 f"}}\n")
        _run("ip", "netns", "exec", netns, "nft", "-f", "-", stdin=rules)

    def start(self, agg_port: int) -> None:
        """Once the aggregator's port is known: the delay relay on every edge link, and the outage clock."""
        routes = [Route(worker, (self.dial_host(worker), agg_port), (CLOUD_IP, agg_port), self.link_of(worker).delay_s)
                  for worker in self.trainers]
        self.relay = DelayRelay(routes, self.hub).start()
        if any(self.link_of(w).outages for w in self.trainers):
            self._scheduler = threading.Thread(target=self._outages, args=(time.monotonic(),),
                                               name="fedmist-outages", daemon=True)
            self._scheduler.start()

    def _outages(self, t0: float) -> None:
        """The outage clock: each outage starts at its time (or once its byte count went up the link, polled
        every ``OUTAGE_POLL_S``) and ends ``for`` seconds later; outages of one edge never overlap."""
        pending = {w: list(self.link_of(w).outages) for w in self.trainers if self.link_of(w).outages}
        ends: dict[str, float] = {}
        while (pending or ends) and not self._stop.wait(OUTAGE_POLL_S):
            now = time.monotonic()
            for worker, when in list(ends.items()):
                if now >= when:
                    del ends[worker]
                    self._set_outage(worker, False)
            for worker, outages in list(pending.items()):
                if not outages:
                    del pending[worker]
                    continue
                if worker in ends:
                    continue
                due = outages[0]
                sent = self.relay.counters[worker].bytes_up if self.relay is not None else 0
                if (sent >= due.after_bytes) if due.after_bytes is not None else now >= t0 + due.at_s:
                    outages.pop(0)
                    ends[worker] = now + due.for_s
                    self._set_outage(worker, True, sent)

    def _set_outage(self, worker: str, down: bool, sent: int = 0) -> None:
        netns = self.edges[worker][1]
        try:
            if down:
                _run("ip", "netns", "exec", netns, "nft", "add", "rule", "inet", NFT_TABLE, "outage", "drop")
            else:
                _run("ip", "netns", "exec", netns, "nft", "flush", "chain", "inet", NFT_TABLE, "outage")
        except NetlabError as exc:
            self.events.append({"t": time.time(), "edge": worker, "event": f"error: {exc}"})
            return
        event: dict[str, Any] = {"t": time.time(), "edge": worker, "event": "link down" if down else "link up"}
        if down:
            event["bytes_up_before"] = sent
        self.events.append(event)

    def snapshot(self) -> dict[str, Any]:
        """For status.json: each edge's link as configured and what crossed it, and the outages so far."""
        counters = self.relay.snapshot() if self.relay is not None else {}
        return {"edges": {w: {"link": self.link_of(w).describe(), "netns": self.edges[w][1], **counters.get(w, {})}
                          for w in self.trainers},
                "aggregator": {"netns": self.cloud, "address": CLOUD_IP}, "events": list(self.events)}

    def down(self) -> None:
        """Remove everything this run made (idempotent): the relay, the clock, then the namespaces -- which
        takes their interfaces, qdiscs and nft tables with them."""
        self._stop.set()
        if self.relay is not None:
            self.relay.stop()
        if self._scheduler is not None:
            self._scheduler.join(COMMAND_TIMEOUT_S)
        for name in reversed(self._made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=COMMAND_TIMEOUT_S)
        self._made.clear()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _trap_signals(self) -> None:
        """SIGTERM becomes KeyboardInterrupt while the lab exists, so the ``finally`` that removes it runs (the
        default action would end the process and leave the namespaces behind)."""
        if threading.current_thread() is not threading.main_thread():
            return

        def interrupt(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, interrupt)
