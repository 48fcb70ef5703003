"""The topology file and --link flag: parsed once, every error one line naming the field."""

from __future__ import annotations

import pytest

from fedmist.launch.netlab.topology import (
    Link,
    Outage,
    TopologyError,
    load_topology,
    parse_link_flag,
    parse_topology,
    topology_from_flags,
)


def test_a_file_gives_each_edge_its_link_over_the_default(tmp_path):
    path = tmp_path / "links.yaml"
    path.write_text("default: {up: 1mbit, down: 10mbit, delay: 50ms}\n"
                    "edges:\n  edge2:\n    up: 256kbit\n    loss: 5%\n    outages: [{at: 20s, for: 10s}]\n")
    topology = load_topology(path)
    assert topology.link_for("edge1") == Link(up_bps=1_000_000, down_bps=10_000_000, delay_s=0.05)
    assert topology.link_for("edge2") == Link(up_bps=256_000, down_bps=10_000_000, delay_s=0.05, loss_pct=5.0,
                                              outages=(Outage(20.0, 10.0),))
    topology.check_workers(["edge1", "edge2"])
    with pytest.raises(TopologyError, match=r"edges \['edge2'\] are not training workers"):
        topology.check_workers(["edge1", "edge3"])


def test_an_outage_can_start_after_a_byte_count_instead_of_a_time():
    topology = parse_topology({"edges": {"edge1": {"outages": [{"after": "100kB", "for": "10s"},
                                                               {"at": "1s", "for": "2s"}]}}}, "links.yaml")
    assert topology.link_for("edge1").outages == (Outage(1.0, 2.0), Outage(0.0, 10.0, after_bytes=100_000))
    with pytest.raises(TopologyError, match=r"after: '1 lot' is not a size"):
        parse_topology({"default": {"outages": [{"after": "1 lot", "for": "1s"}]}}, "links.yaml")


def test_the_link_flag_is_the_same_link_for_every_edge_or_one_edges():
    assert parse_link_flag("up=2mbit, delay=100ms,loss=0.5%") == Link(up_bps=2_000_000, delay_s=0.1, loss_pct=0.5)
    topology = topology_from_flags(["up=10mbit,delay=50ms", "edge2:up=1mbit", "edge2:loss=1%"])
    assert topology.link_for("edge1") == Link(up_bps=10_000_000, delay_s=0.05)
    assert topology.link_for("edge2") == Link(up_bps=1_000_000, delay_s=0.05, loss_pct=1.0)


@pytest.mark.parametrize("raw, match", [
    ({"default": {"up": "fast"}}, r"default\.up: 'fast' is not a rate"),
    ({"default": {"up": "1kbit"}}, r"between 8kbit and 10gbit"),
    ({"default": {"delay": "20s"}}, r"default\.delay: '20s' is over the 10 s"),
    ({"default": {"loss": "100%"}}, r"loss '100%' must be in"),
    ({"default": {"jitter": "1ms"}}, r"unknown fields \['jitter'\]"),
    ({"edges": {"e": {"outages": [{"at": "1s"}]}}}, r"outages\[0\]: expected \{at"),
    ({"links": {}}, r"expected a mapping with `default`"),
])
def test_malformed_fields_are_named(raw, match):
    with pytest.raises(TopologyError, match=match):
        parse_topology(raw, "links.yaml")


def test_a_missing_or_non_yaml_file_is_one_line(tmp_path):
    with pytest.raises(TopologyError, match="--topology .*nope.yaml"):
        load_topology(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("default: [\n")
    with pytest.raises(TopologyError, match="not YAML"):
        load_topology(tmp_path / "bad.yaml")
    with pytest.raises(TopologyError, match=r"expected \[EDGE:\]up=RATE"):
        parse_link_flag("rate=1mbit")
