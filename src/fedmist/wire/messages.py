"""The conversation between a trainer and the aggregator, as typed message metadata.

The envelope (``fedmist.wire``) checks framing, sizes and hashes; this module checks that each message type
carries exactly the metadata it should, with sane values, before the runtime acts on it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fedmist.spec.params import format_epsilon, parse_epsilon
from fedmist.wire.envelope import Envelope, ProtocolError

__all__ = ["epsilon_field", "format_epsilon"]  # format_epsilon: spec/params.py's, the wire's one text form

HELLO = "hello"          # trainer -> aggregator, after the handshake: who I am, how much data I hold
TASK = "task"            # aggregator -> trainer: what to do; body = edge weights (safetensors)
RECORDS = "records"      # trainer -> aggregator: one chunk of feature records
RECORDS_DONE = "records_done"  # trainer -> aggregator: upload finished, whole-upload hash and edge figures
ACK = "ack"              # aggregator -> trainer: how many records are safely stored
ERROR = "error"          # either way: a one-line reason; the sender closes afterwards
FIT = "fit"              # aggregator -> trainer (FedAvg family): global weights and round config
FIT_RESULT = "fit_result"  # trainer -> aggregator: updated weights + sample count + metrics
STOP = "stop"            # aggregator -> trainer: the job is over

#: Most bytes of records an edge puts in one RECORDS frame (whole records; one record alone when it is larger):
#: a lost connection costs at most one frame, and the aggregator sizes each connection's read memory for it.
RECORDS_FRAME_BYTES = 64 * 1024


class _Meta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HelloMeta(_Meta):
    role: Literal["trainer"]
    num_samples: int = Field(ge=0, le=10**10)
    dataset: str = Field(default="", max_length=253)


class TaskMeta(_Meta):
    algorithm: str = Field(max_length=200)
    model: str = Field(max_length=500)
    cut_layer: int = Field(ge=1, le=10_000)
    epsilon: str = Field(max_length=40)  # a float as text, or "inf": JSON has no infinity
    label_epsilon: str = Field(default="", max_length=40)
    batch_size: int = Field(ge=2, le=1_000_000)
    num_classes: int = Field(ge=2, le=65_536)
    resume_records: int = Field(default=0, ge=0)
    chunk_records: int = Field(ge=1, le=10**7)
    seed: int = 0
    # detection (YOLO) jobs: records carry boxes after the bits (fedmist.wire.detect_records)
    task: Literal["classify", "detect"] = "classify"
    imgsz: int = Field(default=0, ge=0, le=8192)


class RecordsMeta(_Meta):
    num_samples: int = Field(ge=1, le=10**10)
    feature_bytes: int = Field(ge=1, le=64 * 1024 * 1024)
    label_bytes: Literal[1, 2]
    feature_shape: list[int] = Field(min_length=1, max_length=8)
    # the noise this edge actually applied (the stricter of its own promise and the job's floor), so the cloud
    # debiases each edge's records with that edge's own flip probability; "inf" = clean bits
    epsilon: str = Field(max_length=40)
    label_epsilon: str = Field(default="", max_length=40)  # "" = labels in clear


class RecordsDoneMeta(_Meta):
    num_samples: int = Field(ge=1, le=10**10)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    compute_s: float = Field(ge=0)
    bytes_up: int = Field(ge=0)
    # S3 transmitter: the records went to this object instead of RECORDS frames
    object_key: str = Field(default="", max_length=1024)
    layout: RecordsMeta | None = None


class AckMeta(_Meta):
    received: int = Field(ge=0)
    complete: bool = False


class ErrorMeta(_Meta):
    reason: str = Field(max_length=2000)


class ObjectRef(_Meta):
    """An S3 object that holds a message's payload (S3 transmitter); see ``transport.carrier``."""

    key: str = Field(min_length=1, max_length=1024)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class FitMeta(_Meta):
    config: dict[str, float | int | str] = Field(default_factory=dict, max_length=48)
    model: str = Field(default="", max_length=500)  # the aggregator decides the architecture for everyone
    trainer: str = Field(default="", max_length=500)  # the job's Trainer class; a trainer's own env wins
    num_classes: int = Field(default=10, ge=2, le=65_536)
    rounds: int = Field(default=0, ge=0, le=10**6)  # the planned number of rounds, for the trainer's progress
    object: ObjectRef | None = None  # S3 transmitter: the global weights are this object, not the body


class FitResultMeta(_Meta):
    num_samples: int = Field(ge=0, le=10**10)
    metrics: dict[str, float] = Field(default_factory=dict)
    compute_s: float = Field(ge=0)
    object: ObjectRef | None = None  # S3 transmitter: the updated weights are this object, not the body


class StopMeta(_Meta):
    reason: str = Field(default="", max_length=2000)


SCHEMAS: dict[str, type[_Meta]] = {
    HELLO: HelloMeta,
    TASK: TaskMeta,
    RECORDS: RecordsMeta,
    RECORDS_DONE: RecordsDoneMeta,
    ACK: AckMeta,
    ERROR: ErrorMeta,
    FIT: FitMeta,
    FIT_RESULT: FitResultMeta,
    STOP: StopMeta,
}


def parse_meta(envelope: Envelope, *expected: str) -> Any:
    """Validate ``envelope.meta`` for its type; raise ProtocolError if the type is unexpected or the meta bad."""
    if expected and envelope.type not in expected:
        if envelope.type == ERROR:
            reason = envelope.meta.get("reason", "") if isinstance(envelope.meta, dict) else ""
            raise ProtocolError(f"peer reported an error: {str(reason)[:300]}")
        raise ProtocolError(f"unexpected message '{envelope.type}' (expected {' or '.join(expected)})")
    schema = SCHEMAS.get(envelope.type)
    if schema is None:
        raise ProtocolError(f"unknown message type '{envelope.type}'")
    return validate_meta(envelope, schema)


def validate_meta(envelope: Envelope, schema: type[BaseModel]) -> Any:
    """``envelope.meta`` checked against ``schema``; the first problem as a one-line ProtocolError naming the
    field, the same wording for every message (the handshake's included)."""
    try:
        return schema.model_validate(envelope.meta)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "meta"
        raise ProtocolError(f"'{envelope.type}' meta.{where}: {first['msg']}") from None


def epsilon_field(text: str, what: str = "epsilon") -> float:
    """An epsilon field of a message read by the job's one rule (spec/params.py ``parse_epsilon``); a
    ``ProtocolError`` naming the field and its text, because a peer sent it."""
    try:
        return parse_epsilon(text)
    except ValueError as exc:
        raise ProtocolError(f"{what} {text!r} {exc}") from None
