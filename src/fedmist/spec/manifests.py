"""Pydantic models of the Sedna manifests fedmist accepts unchanged: Dataset, Model, Secret (v1) and
FederatedLearningJob (``sedna.io/v1alpha1``).

Why mirror Sedna's schema instead of inventing ours: Sedna users already have these files; running them
as written (DESIGN section 3) is the point. Validation here is purely structural and per document;
cross-document references are checked when a job is resolved (``fedmist.spec.job``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import ClassVar, Final

from pydantic import Field, field_validator

from fedmist.spec.base import K8sModel, scalar_to_str
from fedmist.spec.template import PodTemplate

SEDNA_API_VERSION: Final = "sedna.io/v1alpha1"
DATASET_FORMATS: Final = ("txt", "csv", "dir", "idx", "python")
PYTHON_FORMAT: Final = "python"  # url = 'package.module:loader[?name=value&...]' (fedmist.data.python_loader)
_QUIET: Final = None


class ObjectMeta(K8sModel):
    KNOWN_IGNORED: ClassVar[dict[str, str | None]] = {
        key: _QUIET for key in (
            "generateName", "uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
            "generation", "ownerReferences", "finalizers", "managedFields", "selfLink",
        )
    }

    name: str = Field(min_length=1)
    namespace: str | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}

    @field_validator("labels", "annotations", mode="before")
    @classmethod
    def _values_to_str(cls, value: object) -> object:
        if isinstance(value, dict):
            return {key: scalar_to_str(item) for key, item in value.items()}
        return value


class Manifest(K8sModel):
    """Fields every document has. Subclasses set ``API_VERSION``."""

    API_VERSION: ClassVar[str] = SEDNA_API_VERSION
    KNOWN_IGNORED: ClassVar[dict[str, str | None]] = {"status": _QUIET}

    api_version: str
    kind: str
    metadata: ObjectMeta

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, value: str) -> str:
        if value != cls.API_VERSION:
            raise ValueError(f"must be {cls.API_VERSION}")
        return value

    @property
    def name(self) -> str:
        return self.metadata.name

    def notes(self) -> Iterator[tuple[str, str]]:
        """Document-specific warnings beyond unknown fields, as ``(field path, message)``."""
        return iter(())


# --- Dataset and Model ---------------------------------------------------------------------------------

class DatasetSpec(K8sModel):
    url: str = Field(min_length=1)
    format: str
    node_name: str | None = None
    credential_name: str | None = None

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in DATASET_FORMATS:
            raise ValueError(f"must be one of {', '.join(DATASET_FORMATS)}")
        return value


class Dataset(Manifest):
    spec: DatasetSpec


class ModelSpec(K8sModel):
    url: str = Field(min_length=1)
    format: str = Field(min_length=1)
    credential_name: str | None = None


class Model(Manifest):
    spec: ModelSpec


# --- Secret --------------------------------------------------------------------------------------------

class Secret(Manifest):
    """A v1 Secret. After validation ``data`` holds the base64-decoded strings; ``secret_values`` merges
    ``data`` with ``stringData`` (``stringData`` wins, as in Kubernetes)."""

    API_VERSION: ClassVar[str] = "v1"
    KNOWN_IGNORED: ClassVar[dict[str, str | None]] = {"status": _QUIET, "immutable": _QUIET}

    type: str | None = None
    data: dict[str, str] = {}
    string_data: dict[str, str] = {}

    @field_validator("data")
    @classmethod
    def _decode(cls, value: dict[str, str]) -> dict[str, str]:
        decoded: dict[str, str] = {}
        for key, text in value.items():
            try:
                decoded[key] = base64.b64decode(text, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise ValueError(f"value of {key!r} is not base64-encoded UTF-8 text") from None
        return decoded

    @field_validator("string_data", mode="before")
    @classmethod
    def _values_to_str(cls, value: object) -> object:
        if isinstance(value, dict):
            return {key: scalar_to_str(item) for key, item in value.items()}
        return value

    @property
    def secret_values(self) -> dict[str, str]:
        return {**self.data, **self.string_data}

    @property
    def s3_endpoint(self) -> str | None:
        return self.metadata.annotations.get("s3-endpoint") or None

    @property
    def s3_use_https(self) -> bool:
        """Sedna's convention: annotation ``s3-usehttps`` "0" means plain http; anything else https."""
        return self.metadata.annotations.get("s3-usehttps", "1").strip() != "0"


# --- FederatedLearningJob ------------------------------------------------------------------------------

class NameRef(K8sModel):
    name: str = Field(min_length=1)


class AggregationWorker(K8sModel):
    model: NameRef
    template: PodTemplate


class TrainingWorker(K8sModel):
    dataset: NameRef
    template: PodTemplate


class WsTransmitter(K8sModel):
    """``ws: {}``: the default websocket transmitter. ``credentialName`` names a Secret holding the
    aggregator's TLS certificate (``tls.crt``, ``tls.key``, ``ca.crt``) and/or the job ``token``; without
    it the launcher makes a per-job CA and token. The websocket is also S3's control channel, so it applies
    with either transmitter."""

    credential_name: str | None = None


class S3Transmitter(K8sModel):
    agg_data_path: str = Field(min_length=1)
    credential_name: str | None = None


class Transmitter(K8sModel):
    ws: WsTransmitter | None = None
    s3: S3Transmitter | None = None


class JobSpec(K8sModel):
    aggregation_worker: AggregationWorker
    training_workers: tuple[TrainingWorker, ...] = Field(min_length=1)
    pretrained_model: NameRef | None = None
    transmitter: Transmitter | None = None


class FederatedLearningJob(Manifest):
    spec: JobSpec

    def notes(self) -> Iterator[tuple[str, str]]:
        templates = [("spec.aggregationWorker.template", self.spec.aggregation_worker.template)]
        templates += [(f"spec.trainingWorkers[{index}].template", worker.template)
                      for index, worker in enumerate(self.spec.training_workers)]
        for path, template in templates:
            for index in range(1, len(template.spec.containers)):
                yield (f"{path}.spec.containers[{index}]",
                       "only the first container is used locally; ignored")


KINDS: Final[dict[str, type[Manifest]]] = {
    "Dataset": Dataset,
    "Model": Model,
    "Secret": Secret,
    "FederatedLearningJob": FederatedLearningJob,
}
