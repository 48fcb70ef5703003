"""Split one dataset's sample indices over N virtual clients: IID, Dirichlet(alpha) label skew, or label shards.

What a client *is* in a simulation: a name and its row indices into the shared dataset -- nothing else stays
in memory between its turns (no process, no model). :class:`Partition` keeps all clients' indices in one flat
``int32`` array plus offsets, so 10,000 clients cost 4 bytes per sample plus 8 per client.

The schemes, each exact and determined by ``seed`` (the usual ways papers simulate clients):

- ``iid``: a seeded permutation cut into N nearly equal parts (sizes differ by at most one);
- ``dirichlet``: every client gets an equal share (``n // N``, the first ``n % N`` one more), its label mix
  drawn from Dirichlet(alpha) over the classes (smaller alpha, more skew); when a class runs out the rest is
  drawn from the classes still in stock, so sizes are exact and no sample is used twice
  (``fedmist.data.split``'s rule for edges, shared with ``fedmist data split --alpha``);
- ``shards``: samples sorted by label, cut into ``N * shards_per_client`` contiguous shards, each client
  given ``shards_per_client`` of them at random (McMahan et al. 2017's pathological non-IID).

And ``job`` (:func:`by_dataset`), no split at all: each of the job's trainers is one client holding its own
dataset, so a simulation is the job it was given.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from fedmist.data.split import dirichlet_sizes_split

SCHEMES = ("iid", "dirichlet", "shards")
JOB_SCHEME = "job"  # not a split of one dataset: each of the job's trainers, with exactly its own dataset


@dataclass(frozen=True)
class Partition:
    """Client ``i`` owns ``indices[offsets[i]:offsets[i + 1]]`` (sorted rows of the dataset)."""

    indices: np.ndarray  # int32, every client's rows back to back
    offsets: np.ndarray  # int64, len = clients + 1

    @property
    def clients(self) -> int:
        return len(self.offsets) - 1

    def of(self, client: int) -> np.ndarray:
        return self.indices[self.offsets[client]:self.offsets[client + 1]]

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.of(i) for i in range(self.clients))

    @classmethod
    def from_parts(cls, parts: list[np.ndarray]) -> "Partition":
        offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in parts], out=offsets[1:])
        flat = np.concatenate([np.sort(p) for p in parts]) if parts else np.zeros(0)
        return cls(flat.astype(np.int32), offsets)


def partition(labels: np.ndarray, clients: int, scheme: str = "iid", *, alpha: float = 0.5,
              shards_per_client: int = 2, seed: int = 0) -> Partition:
    """Partition ``len(labels)`` samples over ``clients``; ``ValueError`` (one line) for impossible requests."""
    n = len(labels)
    if scheme not in SCHEMES:
        raise ValueError(f"partition {scheme!r}: use one of {', '.join(SCHEMES)}")
    if clients < 1:
        raise ValueError(f"clients must be >= 1, got {clients}")
    if n < clients:
        raise ValueError(f"{clients} clients need at least {clients} samples, the dataset has {n}")
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        return Partition.from_parts(np.array_split(rng.permutation(n), clients))
    if scheme == "dirichlet":
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0 (Dirichlet concentration), got {alpha}")
        sizes = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
        return Partition.from_parts(dirichlet_sizes_split(np.arange(n), np.asarray(labels), sizes, alpha, rng))
    if shards_per_client < 1 or clients * shards_per_client > n:
        raise ValueError(f"{clients} clients x {shards_per_client} shards need at least "
                         f"{clients * shards_per_client} samples, the dataset has {n}")
    by_label = np.argsort(np.asarray(labels), kind="stable")
    shards = np.array_split(by_label, clients * shards_per_client)
    order = rng.permutation(len(shards)).reshape(clients, shards_per_client)
    return Partition.from_parts([np.concatenate([shards[s] for s in row]) for row in order])


def by_dataset(sizes: list[int]) -> Partition:
    """Client ``i`` owns the ``i``-th of datasets laid back to back (``sizes[i]`` rows each), in their order:
    ``--partition job``, where each client is one of the job's trainers holding exactly its dataset."""
    if not sizes or min(sizes) < 1:
        raise ValueError(f"every trainer needs a non-empty dataset, got sizes {list(sizes)}")
    edges = np.cumsum([0, *sizes])
    return Partition.from_parts([np.arange(edges[i], edges[i + 1]) for i in range(len(sizes))])


def label_histograms(labels: np.ndarray, parts: Partition, classes: int) -> np.ndarray:
    """(clients, classes) label counts: what a partition looks like, for summaries and tests."""
    owner = np.repeat(np.arange(parts.clients), parts.sizes())
    out = np.zeros((parts.clients, classes), dtype=np.int64)
    np.add.at(out, (owner, np.asarray(labels)[parts.indices].astype(np.int64)), 1)
    return out
