"""What the CLI takes from the library instead of owning it: ``api.load_job`` (manifests -> checked job,
warnings to a callback), ``api.parse_path_map`` (``--path-map`` items, parsed once) and ``api.pretrain``
with ``format`` and ``on_epoch`` (what ``fedmist pretrain`` calls)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fedmist.api import Job, load_job, parse_path_map, pretrain

SEEN_SPLITS: list[str] = []


def tiny_loader(split: str) -> list:
    """64 distinct 28x28 images, ten classes; records the split it was asked for."""
    import torch

    SEEN_SPLITS.append(split)
    return [(torch.full((1, 28, 28), i / 64.0), i % 10) for i in range(64)]


def test_parse_path_map_reads_items_and_names_a_bad_one() -> None:
    assert parse_path_map(["/data=./data", "/m=/x=y"]) == {"/data": "./data", "/m": "/x=y"}
    with pytest.raises(ValueError) as bad:
        parse_path_map(["/data=./data", "/data"])
    assert str(bad.value) == "--path-map '/data': expected SRC=DST, e.g. /data=./data"


def test_load_job_maps_paths_reports_warnings_and_checks(tmp_path: Path) -> None:
    text = Job("lj", edges=["/host/e1", "/host/e2"], base_dir=tmp_path).to_yaml()
    path = tmp_path / "job.yaml"
    path.write_text(text.replace("spec:\n  aggregationWorker:", "spec:\n  surprise: 1\n  aggregationWorker:", 1))
    warnings: list[str] = []
    job = load_job([path], path_map=["/host=/mnt"], warn=warnings.append)
    assert [t.dataset_url for t in job.resolved.trainers] == ["/mnt/e1", "/mnt/e2"]
    assert len(warnings) == 1 and "surprise" in warnings[0]
    assert load_job([path], path_map={"/host": "/other"}).resolved.trainers[0].dataset_url == "/other/e1"


def test_the_cli_reports_a_bad_path_map_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(Job("lj", edges=["/host/e1"], base_dir=tmp_path).to_yaml())
    result = subprocess.run([sys.executable, "-m", "fedmist", "validate", "-f", str(path), "--path-map", "nope"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "error: --path-map 'nope': expected SRC=DST, e.g. /data=./data\n"


def test_pretrain_takes_a_format_and_reports_each_epoch(tmp_path: Path) -> None:
    """The url's own split wins over ``split``; ``on_epoch`` sees every epoch (``fedmist pretrain`` prints them)."""
    epochs: list[int] = []
    SEEN_SPLITS.clear()
    out = pretrain("lenet5", f"{__name__}:tiny_loader?split=mine", tmp_path / "pre.pth", format="python",
                   split="public", epochs=2, batch_size=32, threads=1, on_epoch=lambda e, stats: epochs.append(e))
    assert out == tmp_path / "pre.pth" and out.is_file()
    assert epochs == [1, 2]
    assert SEEN_SPLITS == ["mine"]
