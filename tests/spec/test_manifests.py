"""fedmist.spec.manifests: the Sedna documents' structural rules, per document."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from fedmist.spec.manifests import KINDS, Dataset, FederatedLearningJob, Secret


def _msg(info: pytest.ExceptionInfo[ValidationError]) -> tuple[str, str]:
    error = info.value.errors()[0]
    return ".".join(str(p) for p in error["loc"]), error["msg"]


def _dataset(**spec) -> dict:
    return {"apiVersion": "sedna.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "d", "labels": {"n": 1}},
            "spec": {"url": "/data", "format": "idx", **spec}}


def test_a_dataset_needs_the_sedna_api_version_and_a_known_format() -> None:
    dataset = Dataset.model_validate(_dataset())
    assert (dataset.name, dataset.spec.format, dataset.metadata.labels) == ("d", "idx", {"n": "1"})
    with pytest.raises(ValidationError) as info:
        Dataset.model_validate(_dataset(format="parquet"))
    assert _msg(info) == ("spec.format", "Value error, must be one of txt, csv, dir, idx, python")
    with pytest.raises(ValidationError) as info:
        Dataset.model_validate({**_dataset(), "apiVersion": "sedna.io/v1"})
    assert _msg(info) == ("apiVersion", "Value error, must be sedna.io/v1alpha1")


def _secret(**fields) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", **fields.pop("meta", {})}, **fields}


def test_secret_data_is_decoded_and_string_data_wins() -> None:
    secret = Secret.model_validate(_secret(data={"a": base64.b64encode(b"from-data").decode(),
                                                 "b": base64.b64encode(b"x").decode()},
                                           stringData={"b": 7}))
    assert secret.secret_values == {"a": "from-data", "b": "7"}
    with pytest.raises(ValidationError) as info:
        Secret.model_validate(_secret(data={"k": "not base64!"}))
    assert _msg(info) == ("data", "Value error, value of 'k' is not base64-encoded UTF-8 text")


def test_s3_annotations_follow_sednas_convention() -> None:
    plain = Secret.model_validate(_secret(meta={"annotations": {"s3-endpoint": "minio:9000", "s3-usehttps": " 0"}}))
    assert (plain.s3_endpoint, plain.s3_use_https) == ("minio:9000", False)
    default = Secret.model_validate(_secret())
    assert (default.s3_endpoint, default.s3_use_https) == (None, True)


def _template(containers: int) -> dict:
    return {"spec": {"containers": [{"image": f"c{i}"} for i in range(containers)]}}


def test_a_job_notes_every_container_after_the_first() -> None:
    job = FederatedLearningJob.model_validate({
        "apiVersion": "sedna.io/v1alpha1", "kind": "FederatedLearningJob", "metadata": {"name": "j"},
        "spec": {"aggregationWorker": {"model": {"name": "m"}, "template": _template(2)},
                 "trainingWorkers": [{"dataset": {"name": "d"}, "template": _template(1)},
                                     {"dataset": {"name": "e"}, "template": _template(3)}]}})
    assert list(job.notes()) == [
        ("spec.aggregationWorker.template.spec.containers[1]", "only the first container is used locally; ignored"),
        ("spec.trainingWorkers[1].template.spec.containers[1]", "only the first container is used locally; ignored"),
        ("spec.trainingWorkers[1].template.spec.containers[2]", "only the first container is used locally; ignored"),
    ]
    assert list(Dataset.model_validate(_dataset()).notes()) == []


def test_a_job_needs_a_training_worker_and_the_kinds_are_the_four_documents() -> None:
    with pytest.raises(ValidationError) as info:
        FederatedLearningJob.model_validate({
            "apiVersion": "sedna.io/v1alpha1", "kind": "FederatedLearningJob", "metadata": {"name": "j"},
            "spec": {"aggregationWorker": {"model": {"name": "m"}, "template": _template(1)}, "trainingWorkers": []}})
    assert _msg(info)[0] == "spec.trainingWorkers"
    assert sorted(KINDS) == ["Dataset", "FederatedLearningJob", "Model", "Secret"]
