"""The disk feature store: exact bytes back, resume after reopen, gaps and bad hashes refused."""

import hashlib

import numpy as np
import pytest

from fedmist.worker.mistnet.feature_store import WorkerStore, open_complete_stores, read_manifest


def _records(n: int, feature_bytes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 256, size=(n, feature_bytes + 1), dtype=np.uint8)
    rows[:, -1] = np.arange(n) % 10
    return rows


def test_write_resume_finish_and_read_back(tmp_path):
    rows = _records(50, 147, 0)
    data = rows.tobytes()
    store = WorkerStore.open(tmp_path, "edge1", num_samples=50, feature_bytes=147, label_bytes=1,
                             feature_shape=[6, 14, 14])
    store.write(0, data[: 20 * 148])
    store.checkpoint()
    store.close()
    # a restarted aggregator reopens the store and learns where to resume
    reopened = WorkerStore.open(tmp_path, "edge1", num_samples=50, feature_bytes=147, label_bytes=1,
                                feature_shape=[6, 14, 14])
    assert reopened.manifest.received == 20
    reopened.write(20 * 148, data[20 * 148:])
    reopened.finish(hashlib.sha256(data).hexdigest())
    assert read_manifest(tmp_path / "edge1").complete

    other = _records(30, 147, 1)
    second = WorkerStore.open(tmp_path, "edge2", num_samples=30, feature_bytes=147, label_bytes=1,
                              feature_shape=[6, 14, 14])
    second.write(0, other.tobytes())
    second.finish(hashlib.sha256(other.tobytes()).hexdigest())

    source = open_complete_stores(tmp_path)
    assert len(source) == 80 and source.feature_shape == (6, 14, 14)
    features, labels = source.batch(np.array([0, 49, 50, 79, 3]))
    expected = np.concatenate([rows, other])[[0, 49, 50, 79, 3]]
    assert np.array_equal(features, expected[:, :147])
    assert labels.tolist() == expected[:, 147].astype(np.int64).tolist()


def test_gap_misalignment_and_bad_hash_are_refused(tmp_path):
    store = WorkerStore.open(tmp_path, "e", num_samples=4, feature_bytes=3, label_bytes=1, feature_shape=[24])
    with pytest.raises(ValueError, match="leaves a gap after 0 records"):
        store.write(8, b"\0" * 4)
    with pytest.raises(ValueError, match="not aligned to 4-byte records"):
        store.write(0, b"\0" * 5)
    with pytest.raises(ValueError, match="beyond 4 records"):
        store.write(0, b"\0" * 20)
    store.write(0, b"\1" * 16)
    with pytest.raises(ValueError, match="sha256 does not match"):
        store.finish("0" * 64)
    assert not read_manifest(tmp_path / "e").complete


def test_incomplete_stores_are_not_trained_on(tmp_path):
    WorkerStore.open(tmp_path, "e", num_samples=4, feature_bytes=3, label_bytes=1, feature_shape=[24])
    with pytest.raises(ValueError, match="no complete feature uploads"):
        open_complete_stores(tmp_path)


@pytest.mark.parametrize("name", ["../x", "../../x", "ABSOLUTE", "a/b", "a\x00b", "..", ".", ""])
def test_a_name_that_is_not_one_path_component_writes_nothing_outside_the_store(tmp_path, name):
    """``ABSOLUTE`` stands for an absolute path outside the store (inside this test's folder, so that the
    starting commit, which wrote there, leaves nothing behind on the machine)."""
    root = tmp_path / "deep" / "store"
    root.mkdir(parents=True)
    name = str(tmp_path / "outside") if name == "ABSOLUTE" else name
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="is not a single path component under"):
        WorkerStore.open(root, name, num_samples=2, feature_bytes=3, label_bytes=1, feature_shape=[24])
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_a_symlink_in_the_store_cannot_lead_a_worker_outside_it(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "edge1").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="resolves outside"):
        WorkerStore.open(root, "edge1", num_samples=2, feature_bytes=3, label_bytes=1, feature_shape=[24])
    assert list((tmp_path / "elsewhere").iterdir()) == []
