"""Partition an MNIST-family training set into a public split and edge splits (DESIGN 8).

The public split (for pretraining the MistNet extractor) is always IID; the edges are IID by default or
label-skewed with a Dirichlet(alpha) prior over classes per edge (smaller alpha = more skew), the usual
way federated-learning papers simulate non-IID clients. Everything is determined by ``seed``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from fedmist.data.idx import IMAGES_TAG, LABELS_TAG, load_idx_dataset, write_idx


def _histogram(labels: np.ndarray, k: int) -> list[int]:
    return np.bincount(labels.astype(np.int64), minlength=k).tolist()


def dirichlet_sizes_split(
    pool: np.ndarray, labels: np.ndarray, sizes: list[int], alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Give each edge exactly its size, drawing its label mix from Dirichlet(alpha) (also ``fedmist simulate``'s
    ``dirichlet`` partition of a dataset over virtual clients).

    Each edge draws class proportions, takes a multinomial count per class, and when a class runs out
    the shortfall is re-drawn from the classes still in stock (proportional to the edge's own mix, or
    uniformly if its preferred classes are exhausted), so sizes are exact and no sample is used twice.
    """
    k = int(labels.max()) + 1 if len(labels) else 1
    by_class = [list(rng.permutation(pool[labels[pool] == c])) for c in range(k)]
    out: list[np.ndarray] = []
    for size in sizes:
        mix = rng.dirichlet(np.full(k, alpha))
        taken: list[int] = []
        need = size
        while need > 0:
            stock = np.array([len(b) for b in by_class], dtype=np.float64)
            weights = mix * (stock > 0)
            if weights.sum() <= 0:
                weights = (stock > 0).astype(np.float64)
            counts = rng.multinomial(need, weights / weights.sum())
            for c in range(k):
                n = int(min(counts[c], len(by_class[c])))
                taken.extend(by_class[c][:n])
                del by_class[c][:n]
                need -= n
        out.append(np.array(taken, dtype=np.int64))
    return out


def _write_split(directory: Path, images: np.ndarray, labels: np.ndarray) -> None:
    write_idx(directory / f"{IMAGES_TAG}.gz", images)
    write_idx(directory / f"{LABELS_TAG}.gz", labels)


def split_dataset(
    source_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    public: int,
    edges: list[int],
    seed: int,
    alpha: float | None = None,
) -> dict[str, object]:
    """Write ``out/public``, ``out/edge1..``, ``out/test`` (each ``images-idx3-ubyte.gz`` + ``labels-idx1-ubyte.gz``).

    The source's ``train`` files are shuffled with ``seed`` and cut into disjoint splits; its ``t10k``
    files become ``test``. Returns (and writes as ``out/split.json``) counts and label histograms.
    """
    src, out = Path(source_dir), Path(out_dir)
    if public < 0 or any(e <= 0 for e in edges):
        raise ValueError(f"split sizes must be positive (public >= 0), got public={public}, edges={edges}")
    if alpha is not None and not alpha > 0:
        raise ValueError(f"alpha must be > 0 (Dirichlet concentration), got {alpha}")
    images, labels = load_idx_dataset(src / "train")
    test_images, test_labels = load_idx_dataset(src / "t10k")
    total = public + sum(edges)
    if total > len(images):
        raise ValueError(
            f"{src}: asked for {total} training samples (public {public} + edges {edges}), only {len(images)} exist"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    parts: dict[str, np.ndarray] = {"public": order[:public]}
    rest = order[public:]
    if alpha is None:
        bounds = np.cumsum([0, *edges])
        edge_parts = [rest[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    else:
        edge_parts = dirichlet_sizes_split(rest, labels, list(edges), float(alpha), rng)
    for i, idx in enumerate(edge_parts, start=1):
        parts[f"edge{i}"] = idx
    k = int(max(labels.max(), test_labels.max())) + 1
    summary: dict[str, object] = {"source": str(src), "seed": seed, "alpha": alpha, "splits": {}}
    splits: dict[str, dict[str, object]] = summary["splits"]  # type: ignore[assignment]
    for name, idx in parts.items():
        _write_split(out / name, images[idx], labels[idx])
        splits[name] = {"count": int(len(idx)), "label_histogram": _histogram(labels[idx], k)}
    _write_split(out / "test", test_images, test_labels)
    splits["test"] = {"count": int(len(test_labels)), "label_histogram": _histogram(test_labels, k)}
    (out / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
