"""fedmist.cli.data: ``data split|export|synth-detection`` parse their options and pass them on unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from fedmist.cli import main
from fedmist.cli.data import _edge_sizes


def test_edge_sizes_are_comma_separated_and_blanks_skipped() -> None:
    assert _edge_sizes("25000, 100,,") == [25000, 100]
    assert _edge_sizes("") == []
    with pytest.raises(ValueError):
        _edge_sizes("10,x")


def test_split_passes_its_options_and_prints_the_counts(monkeypatch, capsys) -> None:
    calls: list[tuple[Any, ...]] = []

    def split_dataset(source, out, **kwargs):
        calls.append((source, out, kwargs))
        return {"splits": {"public": {"count": 10}, "edge1": {"count": 5}}}

    monkeypatch.setattr("fedmist.data.split.split_dataset", split_dataset)
    assert main(["data", "split", "--source", "/src", "--out", "/o", "--edges", "5,6", "--alpha", "0.5"]) == 0
    assert calls == [("/src", "/o", {"public": 10000, "edges": [5, 6], "seed": 0, "alpha": 0.5})]
    assert capsys.readouterr().out == "wrote /o: public 10, edge1 5\n"


def test_export_without_edges_writes_one_train_folder(monkeypatch, capsys) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("fedmist.data.image_index.export_pngs",
                        lambda source, out, **kw: calls.append(kw) or {"train": 3, "test": 2})
    assert main(["data", "export", "--out", "/o", "--limit", "3"]) == 0
    assert calls == [{"limit": 3, "edges": None, "seed": 0}]
    assert capsys.readouterr().out == "wrote /o: train 3 (index.txt), test 2 (index.txt)\n"


def test_synth_detection_reads_min_max_objects_and_refuses_others(monkeypatch, capsys) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("fedmist.data.synth_detection.synthesize_detection",
                        lambda source, out, **kw: calls.append(kw) or {"a": 4, "b": 3})
    assert main(["data", "synth-detection", "--out", "/o", "--objects", "3", "--val", "0"]) == 0
    assert calls[0]["objects"] == (3, 3) and calls[0]["val"] == 0
    assert capsys.readouterr().out == "wrote /o: train 128 images (7 boxes), data.yaml\n"
    assert main(["data", "synth-detection", "--out", "/o", "--objects", "2-x"]) == 2
    assert capsys.readouterr().err == "error: --objects '2-x': expected MIN-MAX, e.g. 2-5\n"
