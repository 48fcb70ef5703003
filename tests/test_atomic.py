"""fedmist.atomic: the target holds the old or the new content, never half, and no temp file is left behind."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fedmist.atomic import write_atomic, write_bytes_atomic, write_json_atomic


def test_bytes_replace_the_target_and_create_missing_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "f.bin"
    write_bytes_atomic(target, b"one")
    write_bytes_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]


def test_a_failing_writer_keeps_the_old_file_and_removes_its_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def half(handle) -> None:
        handle.write(b"ne")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="^disk full$"):
        write_atomic(target, half)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_json_is_pretty_with_a_newline_and_infinities_as_text(tmp_path: Path) -> None:
    target = tmp_path / "s.json"
    write_json_atomic(target, {"eps": math.inf, "neg": -math.inf, "nan": math.nan, 3: (1.5, [math.inf])})
    text = target.read_text()
    assert text.endswith("}\n") and text.startswith('{\n  "eps"')
    assert json.loads(text) == {"eps": "inf", "neg": "-inf", "nan": None, "3": [1.5, ["inf"]]}
