"""Weights files (no pickle of objects, no silent random init) and state-dict slicing at the cut."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedmist.models.lenet import lenet5
from fedmist.models.split import split_model
from fedmist.models.weights import (
    cloud_state_dict,
    edge_state_dict,
    load_weights,
    merge_state_dicts,
    save_weights,
)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["m.pth", "m.pt", "m.safetensors"])
def test_save_load_round_trip(tmp_path: Path, name: str) -> None:
    sd = lenet5().state_dict()
    path = save_weights(sd, tmp_path / "sub" / name)
    assert _same(load_weights(path), sd)
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temp file left behind


@pytest.mark.parametrize("key", ["state_dict", "model"])
def test_load_accepts_wrapped_checkpoints(tmp_path: Path, key: str) -> None:
    sd = lenet5().state_dict()
    torch.save({key: sd, "epoch": 3}, tmp_path / "ckpt.pth")
    assert _same(load_weights(tmp_path / "ckpt.pth"), sd)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "pretrained" / "lenet5.pth"
    with pytest.raises(FileNotFoundError, match=f"weights file not found: {missing}.*random"):
        load_weights(missing)


def test_non_state_dicts_are_rejected(tmp_path: Path) -> None:
    torch.save({"a": 1}, tmp_path / "x.pth")
    with pytest.raises(ValueError, match="does not hold a state dict"):
        load_weights(tmp_path / "x.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read weights from"):
        load_weights(tmp_path / "junk.pth")


def test_edge_cloud_slicing_and_merge() -> None:
    model = lenet5()
    sd = model.state_dict()
    edge_sd, cloud_sd = edge_state_dict(sd, 3), cloud_state_dict(sd, 3)
    assert set(edge_sd) == {"0.weight", "0.bias"}
    assert torch.equal(cloud_sd["0.weight"], sd["3.weight"]) and torch.equal(cloud_sd["8.bias"], sd["11.bias"])
    edge, cloud = split_model(model, 3)
    assert _same(edge.state_dict(), edge_sd) and _same(cloud.state_dict(), cloud_sd)
    assert _same(merge_state_dicts(edge_sd, cloud_sd, 3), sd)
    with pytest.raises(ValueError, match="cloud side"):
        merge_state_dicts(sd, cloud_sd, 3)
    with pytest.raises(ValueError, match="module index"):
        edge_state_dict({"conv.weight": torch.zeros(1)}, 3)
