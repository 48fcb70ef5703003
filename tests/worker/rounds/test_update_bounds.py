"""An update's announced size is judged from the first frame, inline or as an S3 object."""

from __future__ import annotations

import pytest

from fedmist.wire.envelope import Envelope, ProtocolError
from fedmist.worker.rounds.update_bounds import check_update_size


def _result(size: int = 0, meta: dict | None = None) -> Envelope:
    return Envelope(type="fit_result", job="j", worker="a", kind="safetensors" if size else "none", size=size,
                    meta={"num_samples": 1, "compute_s": 0.0, **(meta or {})})


def test_the_exact_size_passes_inline_and_as_an_object():
    check_update_size(_result(size=1234), 1234)
    check_update_size(_result(meta={"object": {"key": "k", "sha256": "0" * 64, "size": 1234}}), 1234)
    check_update_size(_result(size=99), 0)  # unknown model size: only the transport's limits apply


@pytest.mark.parametrize("size", [1233, 1235, 8 * 1024**3])
def test_an_s3_object_of_another_size_is_refused_before_it_is_downloaded(size):
    with pytest.raises(ProtocolError) as refused:
        check_update_size(_result(meta={"object": {"key": "k", "sha256": "0" * 64, "size": size}}), 1234)
    assert str(refused.value) == f"'fit_result' announces {size} bytes; the global model's layout encodes to exactly 1234"
