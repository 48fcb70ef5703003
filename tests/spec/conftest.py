"""Shared helpers: a small valid MistNet job that tests mutate, written to a temporary folder."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

JOB_YAML = """\
apiVersion: sedna.io/v1alpha1
kind: Dataset
metadata:
  name: edge1
spec:
  url: ./data/edge1
  format: idx
---
apiVersion: sedna.io/v1alpha1
kind: Dataset
metadata:
  name: edge2
spec:
  url: /data/edge2
  format: idx
---
apiVersion: sedna.io/v1alpha1
kind: Model
metadata:
  name: lenet
spec:
  url: /model/lenet5.pth
  format: pth
---
apiVersion: sedna.io/v1alpha1
kind: FederatedLearningJob
metadata:
  name: mnist-mistnet
spec:
  aggregationWorker:
    model:
      name: lenet
    template:
      spec:
        nodeName: cloud
        containers:
          - image: fedmist
            env:
              - name: aggregation_algorithm
                value: mistnet
              - name: epsilon
                value: "2"
              - name: cut_layer
                value: 3
              - name: epochs
                value: "10"
  trainingWorkers:
    - dataset:
        name: edge1
      template:
        spec:
          nodeName: edge
          containers:
            - image: fedmist
              env:
                - name: epsilon
                  value: "2"
    - dataset:
        name: edge2
      template:
        spec:
          nodeName: edge
          containers:
            - image: fedmist
              env:
                - name: epsilon
                  value: "2"
"""

WriteJob = Callable[..., Path]


@pytest.fixture
def job_yaml() -> str:
    """The base job's text, for tests that build multi-file or multi-job variants of it."""
    return JOB_YAML


@pytest.fixture
def write_job(tmp_path: Path) -> WriteJob:
    """Write YAML (default: the base job, with ``replace`` pairs applied) and return its path."""

    def write(text: str = JOB_YAML, *, replace: tuple[tuple[str, str], ...] = (),
              name: str = "job.yaml") -> Path:
        for old, new in replace:
            assert old in text, f"test setup: {old!r} not in the YAML"
            text = text.replace(old, new, 1)
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
