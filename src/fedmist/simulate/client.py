"""One pool worker's runner: the dataset and a model built once, then any virtual client trained on demand.

Why a runner per worker and not per client: building the model and reading the data are the fixed costs, and
a client's turn is only ``global weights + its row indices -> local weights``. So memory grows with the pool
size, never with the number of clients. The local training is the same code a real trainer runs
(``fedmist.training`` -> ``models.local_train``), with the same local config rule (the trainer template's
env wins over the round's config, then the FedAvg-family defaults).
"""

from __future__ import annotations

import json
import threading
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fedmist.simulate.messages import pack, unpack


@dataclass(frozen=True)
class RunnerSpec:
    """What every worker needs, JSON-serialisable (it crosses to Ray nodes as text)."""

    model: str
    num_classes: int
    datasets: list[tuple[str, str]]  # (url, format), concatenated in this order
    trainer: str | None = None
    trainer_options: dict[str, str] = field(default_factory=dict)
    threads: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "RunnerSpec":
        raw = json.loads(text)
        raw["datasets"] = [tuple(d) for d in raw["datasets"]]
        return cls(**raw)


def load_data(datasets: list[tuple[str, str]]) -> tuple[Any, np.ndarray]:
    """The datasets' samples back to back (uint8 images, or a user loader's tensors) and their labels."""
    from fedmist.data.loaders import load_dataset

    parts = [load_dataset(url, fmt) for url, fmt in datasets]
    if len(parts) == 1:
        return parts[0][0], np.asarray(parts[0][1])
    images = [p[0] for p in parts]
    if isinstance(images[0], np.ndarray):
        joined: Any = np.concatenate(images)
    else:
        import torch

        joined = torch.cat(images)
    return joined, np.concatenate([np.asarray(p[1]) for p in parts])


def local_config(config: dict[str, Any], client: str, round: int, seed: int) -> Any:
    """The round's LocalConfig for ``client``; its seed mixes the job seed, round and client name."""
    from fedmist.models.local_train import LocalConfig

    mixed = (seed * 1_000_003 + round * 7919 + zlib.crc32(client.encode())) % (2**63)
    return LocalConfig(epochs=max(1, int(config["epochs"])), batch_size=max(1, int(config["batch_size"])),
                       learning_rate=float(config["learning_rate"]), mu=max(0.0, float(config.get("mu", 0.0))),
                       seed=mixed)


class ClientRunner:
    """Trains virtual clients one after another with one model and one copy of the data."""

    def __init__(self, spec: RunnerSpec, data: tuple[Any, np.ndarray] | None = None) -> None:
        import torch

        from fedmist.models.parts import build_job_model
        from fedmist.training import build_trainer

        torch.set_num_threads(max(1, spec.threads))
        self.images, self.labels = data if data is not None else load_data(spec.datasets)
        self.model = build_job_model(spec.model, num_classes=spec.num_classes)
        self.trainer = build_trainer(spec.trainer, spec.trainer_options)
        self.round = 0
        self.global_weights: dict[str, np.ndarray] = {}
        self.samples = 0
        self.compute_s = 0.0

    def set_global(self, round: int, body: bytes | memoryview) -> None:
        from fedmist.wire.arrays import decode_weights

        self.global_weights = decode_weights(bytes(body), check_finite=False)
        self.round = round

    def fit(self, header: dict[str, Any], indices: bytes | memoryview) -> tuple[dict[str, Any], bytearray]:
        """Train ``header['client']`` from the current global weights on its rows; (result header, weights)."""
        import torch

        from fedmist.models.local_train import as_tensors, load_numpy_state, state_to_numpy
        from fedmist.wire.arrays import encode_weights

        if int(header["round"]) != self.round:
            raise ValueError(f"fit for round {header['round']} but the global model is round {self.round}'s")
        rows = np.frombuffer(bytes(indices), dtype=np.int32)
        load_numpy_state(self.model, self.global_weights)
        picked = torch.from_numpy(rows.astype(np.int64)) if isinstance(self.images, torch.Tensor) else rows
        x, y = as_tensors(self.images[picked], self.labels[rows])
        config = local_config(header["config"], header["client"], self.round, int(header.get("seed", 0)))
        result = self.trainer.train(self.model, x, y, config, threading.Event())
        self.samples += int(result.num_samples)
        self.compute_s += float(result.compute_s)
        reply = {"type": "result", "client": header["client"], "round": self.round,
                 "num_samples": int(result.num_samples), "compute_s": round(float(result.compute_s), 4),
                 "metrics": {k: float(v) for k, v in result.metrics.items()}}
        return reply, encode_weights(state_to_numpy(self.model))

    def handle(self, frame: bytes | memoryview) -> bytes | None:
        """One frame in, the reply frame out (None for ``global``); errors become an ``error`` frame."""
        try:
            header, body = unpack(frame)
            if header["type"] == "global":
                self.set_global(int(header["round"]), body)
                return None
            if header["type"] == "fit":
                reply, weights = self.fit(header, body)
                return pack(reply, weights)
            raise ValueError(f"unexpected frame type {header['type']!r}")
        except Exception as exc:  # noqa: BLE001 - reported to the engine, which fails the simulation in one line
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return pack({"type": "error", "message": f"{type(exc).__name__}: {text}"})
