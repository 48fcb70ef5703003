"""fedmist.spec.template: the PodTemplateSpec parts fedmist reads, with Kubernetes' string rules."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fedmist.spec.base import ignored_fields
from fedmist.spec.template import Container, EnvVar, PodTemplate


def _template(**container) -> PodTemplate:
    return PodTemplate.model_validate({"metadata": {"labels": {"a": "b"}},
                                       "spec": {"nodeName": "edge", "containers": [{"image": "fedmist", **container},
                                                                                   {"image": "sidecar"}]}})


def test_env_values_and_args_become_strings_and_the_first_container_counts() -> None:
    template = _template(env=[{"name": "epochs", "value": 10}, {"name": "debias", "value": False},
                              {"name": "empty"}], args=[1, True, "x"])
    assert template.container.image == "fedmist" and template.spec.node_name == "edge"
    assert template.container.env_dict == {"epochs": "10", "debias": "false", "empty": ""}
    assert template.container.args == ("1", "true", "x")
    assert list(ignored_fields(template)) == []


def test_memory_limits_are_bytes_and_absent_ones_none() -> None:
    assert _template(resources={"limits": {"memory": "1Gi", "nvidia.com/gpu": 1}}).container.memory_limit_bytes \
        == 1024 ** 3
    assert _template(resources={"requests": {"cpu": "1"}}).container.memory_limit_bytes is None
    assert _template().container.memory_limit_bytes is None


def test_a_name_twice_in_env_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        Container.model_validate({"env": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]})
    assert info.value.errors()[0]["msg"] == "Value error, 'a' is defined twice"


def test_unknown_restart_policies_and_empty_container_lists_are_refused() -> None:
    with pytest.raises(ValidationError) as info:
        PodTemplate.model_validate({"spec": {"restartPolicy": "Sometimes", "containers": [{}]}})
    assert info.value.errors()[0]["msg"] == "Value error, must be one of Always, OnFailure, Never"
    with pytest.raises(ValidationError):
        PodTemplate.model_validate({"spec": {"containers": []}})


def test_unsupported_kubernetes_fields_are_named_with_a_note() -> None:
    template = PodTemplate.model_validate({"spec": {"initContainers": [], "tolerations": [], "containers": [{
        "envFrom": [], "ports": [], "env": [{"name": "a", "valueFrom": {}}], "colour": "red"}]}})
    assert list(ignored_fields(template)) == [
        ("spec.initContainers", "initContainers are not run locally; ignored"),
        ("spec.containers[0].envFrom", "envFrom is not supported locally; ignored (list env entries instead)"),
        ("spec.containers[0].colour", "unknown field, ignored"),
        ("spec.containers[0].env[0].valueFrom", "valueFrom is not supported locally; ignored (set value instead)"),
    ]
    assert EnvVar.model_validate({"name": "x", "value": 1.5}).value == "1.5"
