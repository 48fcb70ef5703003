"""One pool worker's runner: the dataset and a model built once, then any virtual client trained on demand.

Why a runner per worker and not per client: building the model and reading the data are the fixed costs, and
a client's turn is only ``global weights + its row indices -> local weights``. So memory grows with the pool
size, never with the number of clients. A client's turn is a real trainer's round (``worker/rounds/trainer.py``)
by construction, not by imitation: its parameters come from a trainer's env through the same parse and
defaults, its LocalConfig and its train/validation rows from ``models.local_round`` (the rules the real
trainer calls), its training and validation from ``fedmist.training``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fedmist.simulate.messages import pack, unpack
from fedmist.spec.params import JobParams, parse_params, with_defaults


@dataclass(frozen=True)
class RunnerSpec:
    """What every worker needs, JSON-serialisable (it crosses to Ray nodes as text)."""

    model: str
    num_classes: int
    datasets: list[tuple[str, str]]  # (url, format), concatenated in this order
    trainer: str | None = None  # the aggregator's Trainer (a FIT's ``trainer``); a client's own env wins
    client_env: dict[str, str] = field(default_factory=dict)  # every virtual client's env (a trainer template's)
    named_env: dict[str, dict[str, str]] = field(default_factory=dict)  # --partition job: each trainer's own env
    threads: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "RunnerSpec":
        raw = json.loads(text)
        raw["datasets"] = [tuple(d) for d in raw["datasets"]]
        return cls(**raw)

    def env_of(self, client: str) -> dict[str, str]:
        return self.named_env.get(client, self.client_env)


def client_params(env: dict[str, str], where: str = "<env>") -> JobParams:
    """A client's parameters as a real trainer reads its env (``WorkerContext``: parse, then the runtime's
    defaults); ``ParamError`` for a bad value. The parent calls it first, so errors surface before a fork."""
    return with_defaults(parse_params(env, where=where, role="trainer"))


def load_sized(datasets: list[tuple[str, str]]) -> tuple[tuple[Any, np.ndarray], list[int]]:
    """The datasets' samples back to back (uint8 images, or a user loader's tensors), their labels, and the
    number of samples each dataset gave (``--partition job`` gives each trainer exactly its own)."""
    from fedmist.data.loaders import load_dataset

    parts = [load_dataset(url, fmt) for url, fmt in datasets]
    sizes = [len(p[1]) for p in parts]
    if len(parts) == 1:
        return (parts[0][0], np.asarray(parts[0][1])), sizes
    images = [p[0] for p in parts]
    if isinstance(images[0], np.ndarray):
        joined: Any = np.concatenate(images)
    else:
        import torch

        joined = torch.cat(images)
    return (joined, np.concatenate([np.asarray(p[1]) for p in parts])), sizes


class ClientRunner:
    """Trains virtual clients one after another with one model and one copy of the data."""

    def __init__(self, spec: RunnerSpec, data: tuple[Any, np.ndarray] | None = None) -> None:
        import torch

        from fedmist.models.parts import build_job_model

        torch.set_num_threads(max(1, spec.threads))
        self.spec = spec
        self.images, self.labels = data if data is not None else load_sized(spec.datasets)[0]
        self.model = build_job_model(spec.model, num_classes=spec.num_classes)
        self.clients: dict[str, tuple[JobParams, Any]] = {}  # "" for every virtual client, else a trainer's name
        self.client("")  # a bad trainer fails the pool's start, not its first round
        self.round = 0
        self.global_weights: dict[str, np.ndarray] = {}
        self.samples = 0
        self.compute_s = 0.0

    def set_global(self, round: int, body: bytes | memoryview) -> None:
        from fedmist.wire.arrays import decode_weights

        self.global_weights = decode_weights(bytes(body), check_finite=False)
        self.round = round

    def client(self, name: str) -> tuple[JobParams, Any]:
        """``name``'s parameters and Trainer, built once: one pair for all virtual clients, one per named trainer
        (as a real trainer builds its own: its env's ``trainer`` wins over the aggregator's)."""
        from fedmist.training import build_trainer

        key = name if name in self.spec.named_env else ""
        if key not in self.clients:
            params = client_params(self.spec.env_of(key), where=f"client {key or '(template)'}")
            self.clients[key] = (params, build_trainer(params.trainer or self.spec.trainer or None, params.extra))
        return self.clients[key]

    def rows(self, rows: np.ndarray) -> tuple[Any, Any]:
        """The tensors of dataset rows ``rows`` (``as_tensors``: the real trainer's conversion)."""
        import torch

        from fedmist.models.local_train import as_tensors

        picked = torch.from_numpy(rows.astype(np.int64)) if isinstance(self.images, torch.Tensor) else rows
        return as_tensors(self.images[picked], self.labels[rows])

    def fit(self, header: dict[str, Any], indices: bytes | memoryview) -> tuple[dict[str, Any], bytearray]:
        """Train ``header['client']`` from the current global weights on its rows, less its validation rows
        (then tested on those, as a real trainer does); (result header, weights)."""
        from fedmist.models.local_round import local_config, local_rows
        from fedmist.models.local_train import load_numpy_state, state_to_numpy
        from fedmist.training import check_metrics
        from fedmist.wire.arrays import encode_weights

        if int(header["round"]) != self.round:
            raise ValueError(f"fit for round {header['round']} but the global model is round {self.round}'s")
        name = str(header["client"])
        params, trainer = self.client(name)
        rows = np.frombuffer(bytes(indices), dtype=np.int32)
        train, val = local_rows(len(rows), params)
        load_numpy_state(self.model, self.global_weights)
        config = local_config(params, header["config"], name, self.round, int(header["rounds"]))
        result = trainer.train(self.model, *self.rows(rows[train]), config, threading.Event())
        metrics = {k: float(v) for k, v in result.metrics.items()}
        if len(val):
            where = f"trainer {type(trainer).__qualname__}.evaluate"
            tested = check_metrics(trainer.evaluate(self.model, *self.rows(rows[val])), where)
            metrics.update({f"val_{k}": v for k, v in tested.items()})
        self.samples += int(result.num_samples)
        self.compute_s += float(result.compute_s)
        reply = {"type": "result", "client": name, "round": self.round,
                 "num_samples": int(result.num_samples), "compute_s": round(float(result.compute_s), 4),
                 "metrics": metrics}
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
