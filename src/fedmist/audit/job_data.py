"""What the audit needs from a job: its model split at the cut, the attacker's data and the victims' data.

The attacker (an honest-but-curious cloud) holds the public split the model was pretrained on, which it
uses as auxiliary data; the victims are the training workers' edge datasets. The public split is not
named by the job, so by convention it is looked up beside the edge data (``<edge dataset>/../public``,
the layout ``fedmist data split`` writes), unless the caller names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fedmist.data.loaders import load_dataset
from fedmist.models.registry import build_model
from fedmist.models.split import resolve_cut, split_model
from fedmist.models.weights import load_weights
from fedmist.spec.job import ResolvedJob
from fedmist.spec.params import DEFAULT_NUM_CLASSES, with_defaults

NUM_CLASSES = DEFAULT_NUM_CLASSES


@dataclass
class AuditData:
    """Everything the attacks and the utility runs read; arrays are uint8 images ``(N, H, W)`` + labels."""

    model_name: str
    edge: nn.Sequential
    cloud: nn.Sequential
    cut: int
    job_epsilon: float
    label_epsilon: float | None
    epochs: int
    batch_size: int
    learning_rate: float
    debias: bool
    aux_images: np.ndarray
    aux_labels: np.ndarray
    edge_images: np.ndarray
    edge_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    pretrained_state: dict[str, torch.Tensor]


def _public_path(job: ResolvedJob, public: str | None) -> Path:
    if public:
        return Path(public)
    first = job.trainers[0].dataset_url
    if not first:
        raise ValueError("the job's first training worker has no dataset url; pass --public DIR")
    guess = Path(first).parent / "public"
    if not guess.exists():
        raise ValueError(f"no public split at {guess} (expected beside the edge data); pass --public DIR")
    return guess


def load_audit_data(job: ResolvedJob, public: str | None = None) -> AuditData:
    """Load the pretrained model and all datasets of a MistNet job (one-line ValueErrors on bad input)."""
    params = with_defaults(job.params_for(job.aggregator), "classify", len(job.trainers))
    if params.aggregation_algorithm != "mistnet":
        raise ValueError(f"fedmist audit attacks MistNet uploads; job {job.name} uses {params.aggregation_algorithm}")
    if not job.pretrained_model_url:
        raise ValueError(f"job {job.name} has no pretrainedModel: the audit needs the edge's weights")
    if not params.test_dataset_url:
        raise ValueError(f"job {job.name} sets no TEST_DATASET_URL: the audit needs it for the job's accuracy")
    model = build_model(params.model, num_classes=NUM_CLASSES)
    state = load_weights(job.pretrained_model_url)
    model.load_state_dict(state)
    cut = resolve_cut(model, params.cut_layer)
    edge, cloud = split_model(model, cut)
    parts = [load_dataset(t.dataset_url or "", t.dataset_format or "idx") for t in job.trainers]
    aux_images, aux_labels = load_dataset(str(_public_path(job, public)), "idx")
    test_images, test_labels = load_dataset(params.test_dataset_url, "idx")
    return AuditData(
        model_name=params.model, edge=edge.eval(), cloud=cloud, cut=cut,
        job_epsilon=params.epsilon,  # never None: parse_params refuses a MistNet job without one
        label_epsilon=params.label_epsilon, epochs=params.epochs, batch_size=params.batch_size,
        learning_rate=params.learning_rate, debias=params.debias,
        aux_images=aux_images, aux_labels=np.asarray(aux_labels, dtype=np.int64),
        edge_images=np.concatenate([p[0] for p in parts]),
        edge_labels=np.concatenate([np.asarray(p[1], dtype=np.int64) for p in parts]),
        test_images=test_images, test_labels=np.asarray(test_labels, dtype=np.int64),
        pretrained_state={k: v.clone() for k, v in state.items()},
    )
