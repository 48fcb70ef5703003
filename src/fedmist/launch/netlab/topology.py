"""The topology file of ``fedmist run --topology``: which link each edge sits behind (docs/DESIGN.md section 7).

Why a file of its own and not job parameters: the links are the test bench's, not the job's -- the same
manifests run on loopback, behind emulated links, or on a real cluster. The format is small on purpose::

    default:                 # every edge not named under `edges`
      up: 1mbit              # uplink rate, edge -> cloud (kbit, mbit, gbit, bit; per second)
      down: 10mbit           # downlink rate, cloud -> edge (default: unshaped)
      delay: 50ms            # one-way delay, each direction (added by the delay relay)
      loss: 5%               # random loss of packets, each direction
    edges:
      edge1:                 # a worker name as `fedmist validate` prints it
        up: 256kbit
        outages:             # the link drops every packet for a while: from `at` (seconds after the workers
          - {at: 20s, for: 10s}      # start), or once `after` bytes went up this link (mid-upload, whatever
          - {after: 100kB, for: 10s} # the start-up took)

Parsed and checked once, here; every error is one line naming the file and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

MAX_RATE_BPS = 10_000_000_000  # 10 Gbit/s: above that the shaper is not the bottleneck anyway
MAX_DELAY_S = 10.0
MAX_OUTAGES = 100
_RATE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(bit|kbit|mbit|gbit)?\s*(?:/s|ps)?\s*$", re.IGNORECASE)
_TIME = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s)?\s*$", re.IGNORECASE)
_UNITS = {"bit": 1, "kbit": 1_000, "mbit": 1_000_000, "gbit": 1_000_000_000}
LINK_FIELDS = frozenset({"up", "down", "delay", "loss", "outages"})


class TopologyError(ValueError):
    """The topology file (or a ``--link`` flag) is malformed; the message is one line."""


@dataclass(frozen=True)
class Outage:
    """The link drops every packet, both ways, for ``for_s``: from ``at_s`` seconds after the workers start, or
    (``after_bytes`` set) once that many bytes went up the link."""

    at_s: float
    for_s: float
    after_bytes: int | None = None


@dataclass(frozen=True)
class Link:
    """One edge's link to the cloud. A rate of 0 means unshaped; delay is one way, applied in each direction."""

    up_bps: int = 0
    down_bps: int = 0
    delay_s: float = 0.0
    loss_pct: float = 0.0
    outages: tuple[Outage, ...] = ()

    def describe(self) -> str:
        parts = [f"up {format_rate(self.up_bps)}", f"down {format_rate(self.down_bps)}",
                 f"delay {self.delay_s * 1000:g} ms"]
        if self.loss_pct:
            parts.append(f"loss {self.loss_pct:g}%")
        parts += [(f"outage after {o.after_bytes} B up" if o.after_bytes is not None else f"outage at {o.at_s:g} s")
                  + f" for {o.for_s:g} s" for o in self.outages]
        return ", ".join(parts)


@dataclass(frozen=True)
class Topology:
    """The default link and the edges' own; :meth:`link_for` is what each edge gets."""

    default: Link = Link()
    edges: dict[str, Link] = field(default_factory=dict)
    source: str = "--link"

    def link_for(self, worker: str) -> Link:
        return self.edges.get(worker, self.default)

    def check_workers(self, trainers: list[str]) -> None:
        """Every edge the file names must be a training worker of the job: a typo must not silently leave an
        edge on the default link."""
        unknown = sorted(set(self.edges) - set(trainers))
        if unknown:
            raise TopologyError(f"{self.source}: edges {unknown} are not training workers of the job "
                                f"(they are: {', '.join(trainers)})")


def format_rate(bps: int) -> str:
    if not bps:
        return "unshaped"
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:g} {unit}"
    return f"{bps} bit/s"


def parse_rate(value: Any, where: str) -> int:
    """``"1mbit"``, ``"256kbit"``, ``1000000`` (bit/s) -> bit/s; 0 means unshaped."""
    match = _RATE.match(str(value))
    if not match or isinstance(value, bool):
        raise TopologyError(f"{where}: {value!r} is not a rate like 1mbit, 256kbit or 10mbit")
    bps = int(float(match.group(1)) * _UNITS[(match.group(2) or "bit").lower()])
    if bps and not 8_000 <= bps <= MAX_RATE_BPS:
        raise TopologyError(f"{where}: {value!r} must be between 8kbit and 10gbit (or 0: unshaped)")
    return bps


def parse_time(value: Any, where: str, maximum: float = 24 * 3600.0) -> float:
    """``"50ms"``, ``"10s"``, ``2`` (seconds) -> seconds."""
    match = _TIME.match(str(value))
    if not match or isinstance(value, bool):
        raise TopologyError(f"{where}: {value!r} is not a time like 50ms or 10s")
    seconds = float(match.group(1)) / (1000.0 if (match.group(2) or "s").lower() == "ms" else 1.0)
    if seconds > maximum:
        raise TopologyError(f"{where}: {value!r} is over the {maximum:g} s this field allows")
    return seconds


def parse_loss(value: Any, where: str) -> float:
    text = str(value).strip().rstrip("%").strip()
    try:
        pct = float(text)
    except ValueError:
        raise TopologyError(f"{where}: {value!r} is not a loss like 5%") from None
    if not 0.0 <= pct < 100.0 or isinstance(value, bool):
        raise TopologyError(f"{where}: loss {value!r} must be in [0%, 100%)")
    return pct


def parse_link(raw: Any, where: str, base: Link = Link()) -> Link:
    """A mapping of link fields over ``base`` (the default link, for an edge's own entry)."""
    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise TopologyError(f"{where}: expected a mapping of {sorted(LINK_FIELDS)}")
    unknown = sorted(set(map(str, raw)) - LINK_FIELDS)
    if unknown:
        raise TopologyError(f"{where}: unknown fields {unknown} (known: {sorted(LINK_FIELDS)})")
    link = base
    if "up" in raw:
        link = replace(link, up_bps=parse_rate(raw["up"], f"{where}.up"))
    if "down" in raw:
        link = replace(link, down_bps=parse_rate(raw["down"], f"{where}.down"))
    if "delay" in raw:
        link = replace(link, delay_s=parse_time(raw["delay"], f"{where}.delay", MAX_DELAY_S))
    if "loss" in raw:
        link = replace(link, loss_pct=parse_loss(raw["loss"], f"{where}.loss"))
    if "outages" in raw:
        link = replace(link, outages=_outages(raw["outages"], f"{where}.outages"))
    return link


def _outages(raw: Any, where: str) -> tuple[Outage, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_OUTAGES:
        raise TopologyError(f"{where}: expected a list (at most {MAX_OUTAGES}) of {{at: 20s, for: 10s}}")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) not in ({"at", "for"}, {"after", "for"}):
            raise TopologyError(f"{where}[{i}]: expected {{at: <time>, for: <time>}} or {{after: <bytes>, for: <time>}}")
        duration = parse_time(item["for"], f"{where}[{i}].for")
        if "after" in item:
            out.append(Outage(0.0, duration, parse_bytes(item["after"], f"{where}[{i}].after")))
        else:
            out.append(Outage(parse_time(item["at"], f"{where}[{i}].at"), duration))
    return tuple(sorted(out, key=lambda o: (o.after_bytes is not None, o.at_s, o.after_bytes or 0)))


def parse_bytes(value: Any, where: str) -> int:
    """``"100kB"``, ``"2MB"``, ``5000`` -> bytes (decimal units, as the progress lines print them)."""
    match = re.match(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(B|kB|MB|GB)?\s*$", str(value))
    if not match or isinstance(value, bool):
        raise TopologyError(f"{where}: {value!r} is not a size like 100kB or 2MB")
    scale = {"B": 1, "kB": 1_000, "MB": 1_000_000, "GB": 1_000_000_000}[match.group(2) or "B"]
    return int(float(match.group(1)) * scale)


def parse_topology(raw: Any, source: str) -> Topology:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict) or not set(map(str, raw)) <= {"default", "edges"}:
        raise TopologyError(f"{source}: expected a mapping with `default` and/or `edges`")
    default = parse_link(raw.get("default"), f"{source}: default")
    edges_raw = raw.get("edges") or {}
    if not isinstance(edges_raw, dict):
        raise TopologyError(f"{source}: edges: expected a mapping of worker name -> link")
    edges = {str(name): parse_link(link, f"{source}: edges.{name}", default) for name, link in edges_raw.items()}
    return Topology(default=default, edges=edges, source=source)


def load_topology(path: str | Path) -> Topology:
    """Read and check a topology file; a missing or malformed file raises :class:`TopologyError`."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise TopologyError(f"--topology {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise TopologyError(f"--topology {path}: not YAML ({str(exc).splitlines()[0]})") from None
    return parse_topology(raw, str(path))


def parse_link_flag(text: str, base: Link = Link()) -> Link:
    """``--link up=1mbit,down=10mbit,delay=50ms,loss=1%``: a link without a file (over ``base``)."""
    raw: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in LINK_FIELDS - {"outages"}:
            raise TopologyError(f"--link {text!r}: expected [EDGE:]up=RATE,down=RATE,delay=TIME,loss=PCT")
        raw[key.strip()] = value.strip()
    return parse_link(raw, f"--link {text!r}", base)


def topology_from_flags(flags: list[str]) -> Topology:
    """Repeated ``--link``: ``SPEC`` is every edge's link, ``EDGE:SPEC`` one edge's (over the default)."""
    default, named = Link(), []
    for flag in flags:
        name, sep, spec = flag.partition(":")
        if sep and "=" not in name:
            named.append((name.strip(), spec))
        else:
            default = parse_link_flag(flag, default)
    edges: dict[str, Link] = {}
    for name, spec in named:
        edges[name] = parse_link_flag(spec, edges.get(name, default))
    return Topology(default=default, edges=edges, source="--link")
