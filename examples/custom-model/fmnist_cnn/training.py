"""Our own training loop for FedAvg rounds: random horizontal flips, label smoothing and momentum SGD,
written by hand. fedmist calls ``train`` once per round with the global weights already in ``model``."""

from __future__ import annotations

import threading
import time

import torch
import torch.nn.functional as F
from torch import nn

from fedmist.training import LocalConfig, LocalResult, Trainer


class FlipSmoothTrainer(Trainer):
    """Named in the manifests as ``trainer: fmnist_cnn.training:FlipSmoothTrainer``. Reads its own option
    ``label_smoothing`` from the worker's env (default 0.1)."""

    def train(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, config: LocalConfig,
              cancel: threading.Event) -> LocalResult:
        started = time.perf_counter()
        smoothing = float(self.options.get("label_smoothing", "0.1"))
        params = [p for p in model.parameters() if p.requires_grad]
        velocity = [torch.zeros_like(p) for p in params]
        gen = torch.Generator().manual_seed(config.seed)
        model.train()
        seen = correct = 0
        loss_sum = 0.0
        for _ in range(config.epochs):
            order = torch.randperm(len(labels), generator=gen)
            for start in range(0, len(labels), config.batch_size):
                if cancel.is_set():
                    return LocalResult(len(labels), time.perf_counter() - started, cancelled=True)
                idx = order[start:start + config.batch_size]
                x, y = inputs[idx], labels[idx]
                flip = torch.rand(len(idx), generator=gen) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                out = model(x)
                loss = F.cross_entropy(out, y, label_smoothing=smoothing)
                model.zero_grad(set_to_none=True)
                loss.backward()
                with torch.no_grad():
                    for p, v in zip(params, velocity):
                        v.mul_(config.momentum).add_(p.grad)
                        p.sub_(v, alpha=config.learning_rate)
                loss_sum += float(loss) * len(y)
                correct += int((out.argmax(1) == y).sum())
                seen += len(y)
        return LocalResult(num_samples=len(labels), compute_s=time.perf_counter() - started,
                           metrics={"train_loss": loss_sum / max(1, seen), "train_accuracy": correct / max(1, seen)})

    @torch.no_grad()
    def evaluate(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Accuracy, loss, and the accuracy of the worst class (what a fashion shop would look at)."""
        model.eval()
        out = torch.cat([model(inputs[i:i + 500]) for i in range(0, len(labels), 500)])
        hit = out.argmax(1) == labels
        per_class = [float(hit[labels == c].float().mean()) for c in labels.unique()]
        return {"accuracy": float(hit.float().mean()), "loss": float(F.cross_entropy(out, labels)),
                "worst_class_accuracy": min(per_class)}
