"""fedmist.spec.base: extra manifest keys are kept and reported by path; YAML scalars become env strings."""

from __future__ import annotations

from typing import ClassVar

import pytest

from fedmist.spec.base import UNKNOWN_FIELD, K8sModel, ignored_fields, scalar_to_str


class Leaf(K8sModel):
    KNOWN_IGNORED: ClassVar[dict[str, str | None]] = {"imagePullPolicy": None, "volumes": "volumes are not mounted"}
    name: str


class Free(K8sModel):
    WARN_EXTRAS: ClassVar[bool] = False


class Root(K8sModel):
    pod_spec: Leaf
    items: list[Leaf] = []
    limits: Free | None = None


def test_extras_are_reported_by_their_camel_case_path_with_notes_or_as_unknown() -> None:
    root = Root.model_validate({
        "podSpec": {"name": "a", "imagePullPolicy": "Always", "volumes": [], "typo": 1},
        "items": [{"name": "b"}, {"name": "c", "nmae": "x"}],
        "limits": {"nvidia.com/gpu": 1},
        "extra": True,
    })
    assert root.pod_spec.name == "a"
    assert list(ignored_fields(root)) == [
        ("extra", UNKNOWN_FIELD),
        ("podSpec.volumes", "volumes are not mounted"),
        ("podSpec.typo", UNKNOWN_FIELD),
        ("items[1].nmae", UNKNOWN_FIELD),
    ]
    assert UNKNOWN_FIELD == "unknown field, ignored"


def test_models_are_frozen() -> None:
    leaf = Leaf.model_validate({"name": "a"})
    with pytest.raises(ValueError):
        leaf.name = "b"  # type: ignore[misc]


@pytest.mark.parametrize("value, text", [(None, ""), (True, "true"), (False, "false"), (100, "100"),
                                         (0.5, "0.5"), ("yes", "yes")])
def test_scalars_become_the_text_a_reader_of_the_yaml_expects(value, text) -> None:
    assert scalar_to_str(value) == text


def test_a_nested_value_is_not_a_scalar() -> None:
    with pytest.raises(ValueError, match=r"^must be a string, number or boolean$"):
        scalar_to_str({"a": 1})
