"""The ``device`` job setting: parsed once in spec/params, checked against the machine in models/device."""

from __future__ import annotations

import pytest
import torch

from fedmist.models.device import describe, resolve_device
from fedmist.spec.errors import ParamError
from fedmist.spec.params import parse_params, with_defaults


def test_device_is_parsed_case_insensitively_and_defaults_to_cpu_for_yolo_runtimes():
    assert parse_params({"device": "CUDA:1"}).device == "cuda:1"
    assert with_defaults(parse_params({"aggregation_algorithm": "fedavg"}), "detect").device == "cpu"
    assert with_defaults(parse_params({"aggregation_algorithm": "fedavg"}, role="trainer"), "detect").device == "cpu"
    with pytest.raises(ParamError, match="device.*must be cpu, cuda or cuda:N"):
        parse_params({"device": "gpu"})


def test_cpu_resolves_and_a_missing_gpu_is_a_one_line_error():
    assert resolve_device(None) == torch.device("cpu") and describe(resolve_device("cpu")) == "cpu"
    with pytest.raises(ValueError, match=r"^device cuda:99: ") as err:
        resolve_device("cuda:99")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="use cpu, cuda or cuda:N"):
        resolve_device("tpu")
