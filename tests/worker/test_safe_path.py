"""fedmist.worker.safe_path: a name from a peer becomes a direct child of the root or an UnsafeName."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fedmist.worker.safe_path import UnsafeName, safe_child


def test_a_plain_name_is_a_direct_child(tmp_path: Path) -> None:
    assert safe_child(tmp_path, "edge-1") == tmp_path / "edge-1"
    assert safe_child(tmp_path, "..x") == tmp_path / "..x"  # dots inside a name are fine


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "/etc", "a/b", "a\x00b"])
def test_names_that_are_not_one_component_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafeName) as info:
        safe_child(tmp_path, name)
    assert str(info.value) == f"name {name!r} is not a single path component under {tmp_path}"
    assert isinstance(info.value, ValueError)


def test_the_name_in_the_message_is_cut_to_80_characters(tmp_path: Path) -> None:
    with pytest.raises(UnsafeName) as info:
        safe_child(tmp_path, "a" * 100 + "/")
    assert str(info.value) == f"name {'a' * 80!r} is not a single path component under {tmp_path}"


def test_a_symlink_planted_in_the_root_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    (outside / "deep").mkdir(parents=True)
    os.symlink(outside / "deep", root / "link")
    with pytest.raises(UnsafeName) as info:
        safe_child(root, "link")
    assert str(info.value) == f"name 'link' resolves outside {root}"
