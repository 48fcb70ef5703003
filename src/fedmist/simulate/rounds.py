"""One simulated job's rounds on the parent's side: global model, strategy, sampling, folding, testing.

The history entries have the keys of the real aggregator's (``worker/rounds/aggregator.py``), so
``fedmist report`` and anything reading status.json treat a simulation like a job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from fedmist.models.local_round import round_config
from fedmist.models.local_train import as_tensors
from fedmist.models.parts import build_job_model
from fedmist.models.weights import load_weights
from fedmist.simulate.partition import Partition
from fedmist.strategy import FitResult, build_strategy
from fedmist.strategy.sampling import ClientSampler
from fedmist.training import build_trainer, check_metrics
from fedmist.wire.arrays import decode_weights, encode_weights


class SimulatedRounds:
    def __init__(self, job: Any, plan: Any, parts: Partition, pool: Any, status: Any,
                 say: Callable[[str], None], test: tuple[Any, Any] | None = None) -> None:
        """``test``: the raw TEST_DATASET_URL data (``engine.load_test_set``), None for no global test."""
        params = plan.params
        self.job, self.plan, self.parts, self.pool, self.status, self.say = job, plan, parts, pool, status, say
        self.rounds = int(params.exit_round or 1)
        self.names = plan.names
        self.index = {name: i for i, name in enumerate(self.names)}
        self.strategy = build_strategy(params.aggregation_algorithm,
                                       {**params.extra, **params.model_dump(exclude={"extra"})})
        self.trainer = build_trainer(params.trainer, params.extra)
        self.sampler = ClientSampler(params.seed or 0)
        if plan.eval_threads:  # the pool is forked already: this process now tests, as the aggregator does
            torch.set_num_threads(plan.eval_threads)
        torch.manual_seed(params.seed or 0)
        self.model = build_job_model(plan.spec.model, num_classes=plan.spec.num_classes)
        if job.pretrained_model_url:
            self.model.load_state_dict(load_weights(job.pretrained_model_url))
        self.global_bytes = encode_weights({k: v.detach().numpy() for k, v in self.model.state_dict().items()})
        self.test = as_tensors(*test) if test is not None else None
        self.history: list[dict[str, Any]] = []
        self.started = time.monotonic()

    def fit_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """The round's FIT config, as the real aggregator sends it (each client then resolves its own)."""
        return round_config(self.plan.params, config)

    def run(self) -> None:
        target = self.plan.params.target_accuracy
        for number in range(1, self.rounds + 1):
            entry = self.train_round(number)
            entry.update(self.evaluate())
            entry["elapsed_s"] = round(time.monotonic() - self.started, 3)
            self.history.append(entry)
            self.status.round_done(self.pool, number, self.rounds, self.history)
            acc = entry.get("accuracy")
            self.say(f"round {number}/{self.rounds}: {entry['participants']} clients, "
                     f"accuracy {acc if acc is None else f'{acc:.4f}'}, {entry['duration_s']:.2f} s")
            if target is not None and acc is not None and acc >= target:
                self.say(f"target accuracy {target} reached in round {number}")
                break
        self.status.save_model(self.model, self.global_bytes, self.history, repr(self.strategy))

    def train_round(self, number: int) -> dict[str, Any]:
        started = time.monotonic()
        global_weights = decode_weights(self.global_bytes, check_finite=False)
        instructions = self.sampler.configure(self.strategy, number, global_weights, self.names)
        config = self.fit_config(dict(instructions.config))
        tasks = [({"type": "fit", "round": number, "rounds": self.rounds, "client": name, "config": config},
                  self.parts.of(self.index[name]).tobytes()) for name in instructions.workers]
        self.status.stage(self.pool, "training", number, self.rounds)
        self.strategy.begin_round(number, global_weights)
        bytes_up, compute = 0, []
        for header, body in self.pool.run_round(number, self.global_bytes, tasks):
            bytes_up += len(body)
            compute.append(float(header["compute_s"]))
            weights = decode_weights(body)  # finite values checked, as the aggregator checks a trainer's
            self.strategy.accumulate(FitResult(str(header["client"]), weights, int(header["num_samples"]),
                                               dict(header.get("metrics", {}))))
            del weights
        new = dict(self.strategy.finish_round())
        del global_weights
        self.global_bytes = encode_weights(new, consume=True)
        selected = sorted(instructions.workers)
        return {"round": number, "participants": len(compute), "selected": len(selected), "late": 0, "lost": 0,
                "lost_workers": [], "rejected": [], "selected_workers": selected, "bytes_up": bytes_up,
                "bytes_down": len(self.global_bytes) * len(selected),
                "duration_s": round(time.monotonic() - started, 3),
                "max_compute_s": round(max(compute, default=0.0), 3)}

    def evaluate(self) -> dict[str, Any]:
        from fedmist.models.local_train import load_numpy_state

        if self.test is None:
            return {"accuracy": None, "loss": None}
        started = time.monotonic()
        load_numpy_state(self.model, decode_weights(self.global_bytes, check_finite=False))
        result = check_metrics(self.trainer.evaluate_global(self.model, *self.test), "evaluate_global")
        out: dict[str, Any] = {f"test_{k}": v for k, v in result.items() if k not in ("accuracy", "loss")}
        out.update(accuracy=result.get("accuracy"), loss=result.get("loss"),
                   eval_s=round(time.monotonic() - started, 3))
        return out



