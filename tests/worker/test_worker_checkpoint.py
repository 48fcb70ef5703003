"""Aggregator checkpoints: exact round trip, refusal of foreign or damaged files, a full disk that leaves the old
checkpoint valid, and cloud training that resumes bit for bit."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fedmist.models.cloud_train import CloudTrainState, InMemoryPackedSource, train_cloud
from fedmist.models.registry import build_model
from fedmist.models.split import split_model
from fedmist.spec.params import parse_params
from fedmist.worker.checkpoint import Checkpoint, CheckpointStore, decode, encode, job_spec_fields, spec_hash


def _arrays(value: float, n: int = 8) -> dict[str, np.ndarray]:
    return {"global/w": np.full(n, value, np.float32), "strategy/m/w": np.arange(n, dtype=np.float64),
            "rng/torch": np.arange(5, dtype=np.uint8)}


def test_round_trip_keeps_arrays_meta_and_big_rng_integers_exactly(tmp_path):
    rng = np.random.default_rng(7)
    rng.random(3)
    store = CheckpointStore(tmp_path, spec_hash({"job": "a", "epochs": 3}), "rounds")
    meta = {"rng": rng.bit_generator.state, "history": [{"round": 1, "accuracy": 0.5}], "epsilon": float("inf")}
    store.save(4, _arrays(1.5), meta)
    loaded = store.load()
    assert loaded is not None and loaded.step == 4 and loaded.kind == "rounds"
    assert sorted(loaded.arrays) == sorted(_arrays(1.5))
    for key, value in _arrays(1.5).items():
        assert loaded.arrays[key].dtype == value.dtype and np.array_equal(loaded.arrays[key], value)
    assert loaded.meta["history"] == meta["history"] and loaded.meta["epsilon"] == float("inf")
    again = np.random.default_rng(0)
    again.bit_generator.state = loaded.meta["rng"]
    assert again.random() == rng.random()  # the 128-bit PCG64 state survived JSON exactly


def test_a_checkpoint_of_another_spec_or_runtime_is_ignored_with_a_log_line(tmp_path, caplog):
    caplog.set_level(logging.INFO, "fedmist.checkpoint")
    CheckpointStore(tmp_path, spec_hash({"job": "a", "epochs": 3}), "rounds").save(2, _arrays(1.0), {})
    other_spec = CheckpointStore(tmp_path, spec_hash({"job": "a", "epochs": 4}), "rounds")
    assert other_spec.load() is None
    assert "ignoring checkpoint" in caplog.text and "made for rounds spec" in caplog.text
    assert CheckpointStore(tmp_path, spec_hash({"job": "a", "epochs": 3}), "mistnet-cloud").load() is None
    assert CheckpointStore(tmp_path, spec_hash({"job": "a", "epochs": 3}), "rounds").load().step == 2


def test_damaged_files_are_refused(tmp_path, caplog):
    caplog.set_level(logging.WARNING, "fedmist.checkpoint")
    store = CheckpointStore(tmp_path, "s", "rounds")
    store.save(1, _arrays(2.0), {"x": 1})
    data = bytearray(store.path.read_bytes())
    data[-3] ^= 0xFF  # one flipped bit in the array data
    store.path.write_bytes(bytes(data))
    assert store.load() is None and "does not match the checkpoint's sha256" in caplog.text
    store.path.write_bytes(bytes(data[: len(data) // 2]))  # a torn file
    assert store.load() is None
    with pytest.raises(ValueError, match="too short"):
        decode(b"abc")
    assert decode(encode(Checkpoint("k", "s", 3, {}, {"a": [1]}))).meta == {"a": [1]}


_FULL_DISK = textwrap.dedent("""
    import errno, json, resource, signal, sys
    import numpy as np
    from fedmist.worker.checkpoint import CheckpointStore
    store = CheckpointStore(sys.argv[1], "spec", "rounds")
    store.save(1, {"global/w": np.ones(1000, np.float32)}, {"round": 1})
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then write() fails with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
    big = {"global/w": np.full(1_000_000, 2.0, np.float32)}  # 4 MB: the write stops at 64 KiB
    try:
        store.save(2, big, {"round": 2})
        outcome = "written"
    except OSError as exc:
        outcome = errno.errorcode.get(exc.errno, str(exc.errno))
    print(json.dumps({"save": outcome, "try_save": store.try_save(2, big, {"round": 2})}))
""")


def test_a_full_disk_during_a_checkpoint_write_leaves_the_previous_one_valid(tmp_path):
    """The file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes the kernel fail the write half-way with EFBIG,
    as a full disk fails it with ENOSPC: the temp file is removed, the old checkpoint stays the resume point."""
    result = subprocess.run([sys.executable, "-c", _FULL_DISK, str(tmp_path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"save": "EFBIG", "try_save": False}
    assert "not written" in result.stderr and "previous checkpoint stays the resume point" in result.stderr
    loaded = CheckpointStore(tmp_path, "spec", "rounds").load()
    assert loaded is not None and loaded.step == 1 and np.array_equal(loaded.arrays["global/w"], np.ones(1000))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.safetensors"]  # no temp file left behind


def test_cloud_training_resumed_from_a_checkpoint_ends_bit_identical(tmp_path):
    """Train 3 epochs straight; train again, 'crash' after epoch 1, resume from the file: same weights."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    packed = rng.integers(0, 256, size=(300, 147), dtype=np.uint8)
    labels = rng.integers(0, 10, size=300)
    source = InMemoryPackedSource(packed, labels, (6, 14, 14))

    def fresh_cloud() -> torch.nn.Module:
        torch.manual_seed(3)
        return split_model(build_model("lenet5", num_classes=10), 3)[1]

    settings = dict(epochs=3, batch_size=32, max_lr=0.05, epsilon=2.0, augment="flip_shift", seed=5)
    straight = fresh_cloud()
    reference = train_cloud(straight, source, **settings)

    store = CheckpointStore(tmp_path, "spec", "mistnet-cloud")

    class Crash(Exception):
        pass

    def save_then_crash(epoch, state):
        store.save(epoch, state.arrays, state.meta)
        raise Crash

    with pytest.raises(Crash):
        train_cloud(fresh_cloud(), source, **settings, on_epoch_end=save_then_crash)
    saved = store.load()
    resumed = fresh_cloud()
    torch.manual_seed(99)  # the resume must not depend on the process's global RNG state
    result = train_cloud(resumed, source, **settings, resume=CloudTrainState(saved.step, saved.arrays, saved.meta))
    assert saved.step == 1
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert [(h["loss"], h["accuracy"]) for h in result["history"]] == [
        (h["loss"], h["accuracy"]) for h in reference["history"]]


def _ctx(env: dict[str, str]) -> SimpleNamespace:
    return SimpleNamespace(job="j", participants=("a", "b"), transmitter="ws", pretrained_model_url=None,
                           params=parse_params({"aggregation_algorithm": "fedavg", **env}))


def test_the_spec_digest_ignores_the_process_environment_but_not_user_parameters() -> None:
    """A recreated aggregator pod (another HOSTNAME, per-pod FEDMIST_* folders) finds its job's checkpoint;
    a changed user parameter (a custom trainer's setting) does not."""
    base = {"rounds": "5", "mu_custom": "0.1"}
    first = spec_hash(job_spec_fields(_ctx({**base, "HOSTNAME": "agg-0", "FEDMIST_STATUS_FILE": "/pod0/s.json",
                                            "PATH": "/a"})))
    again = spec_hash(job_spec_fields(_ctx({**base, "HOSTNAME": "agg-0-1", "FEDMIST_STATUS_FILE": "/pod1/s.json",
                                            "PATH": "/b", "KUBERNETES_SERVICE_HOST": "10.0.0.1"})))
    assert first == again
    assert spec_hash(job_spec_fields(_ctx({**base, "mu_custom": "0.2"}))) != first
    assert spec_hash(job_spec_fields(_ctx({**base, "rounds": "6"}))) != first
