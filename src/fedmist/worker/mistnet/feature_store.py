"""On-disk store for the feature records MistNet edges upload (DESIGN section 5.5).

Each worker gets a folder with a preallocated file of fixed-size records (packed bits, then the label) and a
small JSON manifest saying how many records arrived contiguously and, once complete, their SHA-256. The file
is memory-mapped, so the aggregator's memory does not grow with the data, and the manifest is replaced
atomically, so a restarted aggregator knows exactly what it already holds and tells the edge where to resume.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fedmist.atomic import write_json_atomic
from fedmist.worker.safe_path import safe_child

_RECORDS = "records.u8"
_MANIFEST = "manifest.json"


@dataclass
class StoreManifest:
    """What a worker's store holds; persisted as ``manifest.json``."""

    worker: str
    num_samples: int
    feature_bytes: int
    label_bytes: int
    feature_shape: list[int]
    received: int = 0
    complete: bool = False
    sha256: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def record_bytes(self) -> int:
        return self.feature_bytes + self.label_bytes

    @property
    def task(self) -> str:
        """Fingerprint of the task these records answer ("" for stores made without one)."""
        return str(self.extra.get("task", ""))

    @property
    def epsilon(self) -> str:
        """The epsilon the edge applied to these records ("" for stores made before edges declared it)."""
        return str(self.extra.get("epsilon", ""))

    @property
    def label_epsilon(self) -> str:
        """The label epsilon the edge applied ("" = labels in clear)."""
        return str(self.extra.get("label_epsilon", ""))


class WorkerStore:
    """One worker's records file plus manifest. Writes are append-at-offset and idempotent."""

    def __init__(self, folder: Path, manifest: StoreManifest) -> None:
        self.folder = folder
        self.manifest = manifest
        self._path = folder / _RECORDS
        self._fd: int | None = None
        self._unsynced = 0

    @classmethod
    def open(cls, root: Path, worker: str, *, num_samples: int, feature_bytes: int, label_bytes: int,
             feature_shape: list[int], task: str = "", privacy: dict[str, str] | None = None) -> "WorkerStore":
        """Open (resuming) or create the store for ``worker``. A change of layout or of ``task`` (the
        fingerprint of what the edge was asked to compute: model, cut, epsilon, edge weights) starts it afresh,
        so features made for another job setting are never mixed in or reused.

        ``privacy`` (``{"epsilon", "label_epsilon"}`` as text) is what the edge applied; it is kept in the
        manifest so the cloud debiases these records with it even after a restart. Records of one upload share
        one noise level: resuming with other values raises ValueError instead of mixing them."""
        folder = safe_child(root, worker)  # the name came from a frame header: never a path outside the store
        folder.mkdir(parents=True, exist_ok=True)
        privacy = dict(privacy or {})
        wanted = StoreManifest(worker, num_samples, feature_bytes, label_bytes, list(feature_shape),
                               extra={"task": task, **privacy})
        existing = read_manifest(folder)
        same_layout = existing is not None and (
            existing.num_samples, existing.feature_bytes, existing.label_bytes, existing.feature_shape,
            existing.task) == (num_samples, feature_bytes, label_bytes, list(feature_shape), task)
        if same_layout and existing.received and privacy and "epsilon" in existing.extra:
            held = {key: str(existing.extra.get(key, "")) for key in privacy}
            if held != privacy:
                raise ValueError(f"worker '{worker}' changed its privacy settings during its upload: "
                                 f"{_privacy_text(held)} before, {_privacy_text(privacy)} now")
        if same_layout and privacy:
            existing.extra.update(privacy)
        store = cls(folder, existing if same_layout else wanted)
        if not same_layout:
            store._path.unlink(missing_ok=True)
        size = num_samples * wanted.record_bytes
        store._path.touch()
        if store._path.stat().st_size != size:
            os.truncate(store._path, size)
        store._save_manifest()
        return store

    def write(self, offset: int, data: bytes | memoryview) -> int:
        """Write records at byte ``offset``; only contiguous data advances ``received``. Returns records held."""
        record = self.manifest.record_bytes
        if offset % record or len(data) % record:
            raise ValueError(f"chunk [{offset}, {offset + len(data)}) not aligned to {record}-byte records")
        end = offset + len(data)
        if end > self.manifest.num_samples * record:
            raise ValueError(f"chunk ends at {end}, beyond {self.manifest.num_samples} records")
        if offset > self.manifest.received * record:
            raise ValueError(f"chunk at {offset} leaves a gap after {self.manifest.received} records")
        if self._fd is None:
            self._fd = os.open(self._path, os.O_WRONLY)
        os.pwrite(self._fd, data, offset)
        self._unsynced += len(data)
        self.manifest.received = max(self.manifest.received, end // record)
        if self._unsynced >= 8 * 1024 * 1024:
            self.checkpoint()
        return self.manifest.received

    def checkpoint(self) -> None:
        """Flush data, then the manifest, so the manifest never claims bytes the disk lacks."""
        if self._fd is not None:
            os.fsync(self._fd)
        self._unsynced = 0
        self._save_manifest()

    def finish(self, expected_sha256: str) -> None:
        """Verify the whole upload against the sender's hash and mark it complete."""
        if self.manifest.received != self.manifest.num_samples:
            raise ValueError(f"only {self.manifest.received} of {self.manifest.num_samples} records arrived")
        digest = file_sha256(self._path)
        if digest != expected_sha256:
            raise ValueError("records sha256 does not match the sender's")
        self.manifest.complete = True
        self.manifest.sha256 = digest
        self.checkpoint()
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _save_manifest(self) -> None:
        write_json_atomic(self.folder / _MANIFEST, asdict(self.manifest))


def _privacy_text(values: dict[str, str]) -> str:
    return ", ".join(f"{key} {(value or 'clear') if key == 'label_epsilon' else value}" for key, value in values.items())


def read_manifest(folder: Path) -> StoreManifest | None:
    """The manifest in ``folder``, or None when absent or unreadable (then the store starts afresh)."""
    try:
        raw = json.loads((folder / _MANIFEST).read_text())
        return StoreManifest(**raw)
    except (OSError, ValueError, TypeError):
        return None


def file_sha256(path: Path, block: int = 4 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


class StoreSource:
    """All complete worker stores as one indexable training set (the ``PackedFeatureSource`` protocol).

    Records are read through read-only memory maps, batch by batch; nothing loads the whole set.
    """

    def __init__(self, manifests: list[tuple[Path, StoreManifest]]) -> None:
        if not manifests:
            raise ValueError("no complete feature uploads to train on")
        first = manifests[0][1]
        for _, manifest in manifests:
            if (manifest.feature_bytes, manifest.label_bytes, manifest.feature_shape) != (
                first.feature_bytes, first.label_bytes, first.feature_shape):
                raise ValueError(f"worker {manifest.worker} uploaded features of another layout")
        self.feature_shape = tuple(first.feature_shape)
        self._feature_bytes = first.feature_bytes
        self._label_bytes = first.label_bytes
        # Plain ndarray views of the maps: indexing a np.memmap subclass costs more than the copy itself.
        self._maps = [
            np.asarray(np.memmap(folder / _RECORDS, dtype=np.uint8, mode="r", shape=(m.num_samples, m.record_bytes)))
            for folder, m in manifests
        ]
        self._starts = np.cumsum([0] + [len(m) for m in self._maps])
        # Per store, in order: who sent it and the noise it applied ("" when its manifest predates that).
        self.workers = tuple(m.worker for _, m in manifests)
        self.epsilons = tuple(m.epsilon for _, m in manifests)
        self.label_epsilons = tuple(m.label_epsilon for _, m in manifests)
        self.counts = tuple(int(m.num_samples) for _, m in manifests)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def origins(self, indices: np.ndarray) -> np.ndarray:
        """The store (index into :attr:`workers`) each of ``indices`` comes from: how the cloud picks each
        sample's debiasing, since every edge may have applied its own epsilon."""
        return (np.searchsorted(self._starts, indices, side="right") - 1).astype(np.int64)

    def batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Packed features (B, feature_bytes) and int64 labels (B,) for global sample ``indices``."""
        if len(self._maps) == 1:
            rows = self._maps[0].take(indices, axis=0)
        else:
            which = np.searchsorted(self._starts, indices, side="right") - 1
            rows = np.empty((len(indices), self._feature_bytes + self._label_bytes), dtype=np.uint8)
            for store_index in np.unique(which):
                mask = which == store_index
                rows[mask] = self._maps[store_index].take(indices[mask] - self._starts[store_index], axis=0)
        labels = rows[:, self._feature_bytes:].copy().view(f"<u{self._label_bytes}").reshape(-1)
        return rows[:, : self._feature_bytes], labels.astype(np.int64)


def open_complete_stores(root: Path, workers: list[str] | None = None) -> StoreSource:
    """A :class:`StoreSource` over every complete store under ``root`` (or just ``workers``), in name order."""
    names = workers if workers is not None else sorted(p.name for p in root.iterdir() if p.is_dir())
    found = [(safe_child(root, n), m) for n in names
             if (m := read_manifest(safe_child(root, n))) is not None and m.complete]
    return StoreSource(found)
