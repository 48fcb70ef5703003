"""Aggregator checkpoints: one safetensors file per job, replaced atomically at every phase boundary.

Why one file: arrays (model, optimizer, strategy, RNG states) and the JSON header (spec hash, epoch or round,
history, feature-store manifest summary) must change together; two files renamed one after the other could
be caught half-way by a crash. Safetensors carries a string metadata map in its header, so the JSON rides
inside the same file and the whole checkpoint is replaced by one ``rename`` (temp file, fsync, rename, fsync
folder: :func:`fedmist.atomic.write_bytes_atomic`). No pickle: arrays are raw little-endian buffers.

A checkpoint is only used by a run of the *same* job spec: its header carries :func:`spec_hash` of the
worker's job parameters; a mismatch is logged and the checkpoint ignored (it is overwritten by the next save).
A write that fails (disk full, file-size limit) leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from fedmist.atomic import write_atomic
from fedmist.spec.params import job_extra
from fedmist.wire.arrays import write_weights

log = logging.getLogger("fedmist.checkpoint")

FORMAT = "fedmist-checkpoint/1"
FILE_NAME = "checkpoint.safetensors"
_META_KEY = "fedmist"
MAX_HEADER_BYTES = 64 * 1024 * 1024

Writer = Callable[[Path, Callable[[BinaryIO], object]], None]  # fedmist.atomic.write_atomic


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be trusted (truncated, altered, another format)."""


@dataclass
class Checkpoint:
    """What a phase boundary leaves behind: ``step`` (epoch or round completed), arrays and a JSON header."""

    kind: str
    spec_hash: str
    step: int
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def spec_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 of a job's defining fields as canonical JSON (what must match for a checkpoint to be reused)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def job_spec_fields(ctx: Any, **extra: Any) -> dict[str, Any]:
    """The fields of a worker's job that a checkpoint must agree with: job name, participants, transmitter,
    the pretrained model and every job parameter (plus runtime-specific ``extra``, e.g. the feature task).

    The process environment is not part of the job: a recreated pod has another HOSTNAME and other per-pod
    folders in its FEDMIST_* paths, and must still find its job's checkpoint (``job_extra``)."""
    params = ctx.params.model_dump(exclude={"extra"})
    return {"job": ctx.job, "participants": ctx.participants, "transmitter": ctx.transmitter,
            "pretrained_model_url": ctx.pretrained_model_url, "params": params,
            "user_params": job_extra(ctx.params.extra), **extra}


def _arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        digest.update(memoryview(arr.reshape(-1)).cast("B"))  # the array's own memory, no tobytes() copy
    return digest.hexdigest()


def encode(checkpoint: Checkpoint) -> bytes:
    """The checkpoint as safetensors bytes, its JSON header under the ``fedmist`` metadata key."""
    out = io.BytesIO()
    write(out, checkpoint)
    return out.getvalue()


def write(handle: BinaryIO, checkpoint: Checkpoint) -> int:
    """Write :func:`encode`'s bytes to ``handle`` array by array (no checkpoint-sized buffer); return the size.

    Why: ``safetensors.numpy.save`` builds the whole file in memory twice over, which at a round boundary of a
    1 GB model was two model copies on top of the global model (BENCHMARKS.md, FedAvg aggregator memory).
    """
    arrays = {k: np.ascontiguousarray(v) for k, v in checkpoint.arrays.items()}
    header = {"format": FORMAT, "kind": checkpoint.kind, "spec_hash": checkpoint.spec_hash,
              "step": int(checkpoint.step), "arrays_sha256": _arrays_digest(arrays), "meta": checkpoint.meta}
    return write_weights(handle, arrays, {_META_KEY: json.dumps(header, allow_nan=True)})


def decode(data: bytes) -> Checkpoint:
    """Parse and verify :func:`encode` output; raise CheckpointError on anything unexpected."""
    from safetensors.numpy import load

    if len(data) < 8:
        raise CheckpointError(f"{len(data)} bytes is too short for a checkpoint")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > min(MAX_HEADER_BYTES, len(data) - 8):
        raise CheckpointError(f"header length {header_len} does not fit a file of {len(data)} bytes")
    try:
        raw_header = json.loads(data[8:8 + header_len])
        header = json.loads(raw_header["__metadata__"][_META_KEY])
        arrays = dict(load(data))
    except Exception as exc:  # noqa: BLE001 - json, safetensors and struct each raise their own types
        raise CheckpointError(f"unreadable checkpoint: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"not a {FORMAT} file")
    if header.get("arrays_sha256") != _arrays_digest(arrays):
        raise CheckpointError("array data does not match the checkpoint's sha256")
    try:
        return Checkpoint(kind=str(header["kind"]), spec_hash=str(header["spec_hash"]), step=int(header["step"]),
                          arrays=arrays, meta=dict(header["meta"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint header lacks {exc}") from None


class CheckpointStore:
    """Save and load one aggregator's checkpoint in ``folder`` for one job spec and runtime ``kind``."""

    def __init__(self, folder: Path, spec: str, kind: str, writer: Writer = write_atomic) -> None:
        self.path = Path(folder) / FILE_NAME
        self.spec = spec
        self.kind = kind
        self._writer = writer

    def save(self, step: int, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> int:
        """Replace the checkpoint atomically; return its size. Raises OSError (the old file stays intact)."""
        checkpoint = Checkpoint(self.kind, self.spec, step, dict(arrays), dict(meta))
        size = [0]

        def fill(handle: BinaryIO) -> None:
            size[0] = write(handle, checkpoint)

        self._writer(self.path, fill)
        return size[0]

    def try_save(self, step: int, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> bool:
        """:meth:`save`, but a failed write (disk full...) is logged and the job goes on from the old one."""
        try:
            size = self.save(step, arrays, meta)
        except OSError as exc:
            log.warning("checkpoint of %s %d not written (%s); the previous checkpoint stays the resume point",
                        self.kind, step, exc)
            return False
        log.info("checkpoint: %s step %d saved (%d bytes) to %s", self.kind, step, size, self.path)
        return True

    def load(self) -> Checkpoint | None:
        """The checkpoint to resume from, or None (absent, unreadable, or made for another spec or runtime)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("ignoring checkpoint %s: %s", self.path, exc)
            return None
        try:
            checkpoint = decode(data)
        except CheckpointError as exc:
            log.warning("ignoring checkpoint %s: %s", self.path, exc)
            return None
        if checkpoint.kind != self.kind or checkpoint.spec_hash != self.spec:
            log.warning("ignoring checkpoint %s: made for %s spec %s..., this job is %s spec %s...", self.path,
                        checkpoint.kind, checkpoint.spec_hash[:12], self.kind, self.spec[:12])
            return None
        log.info("resuming from checkpoint %s: %s step %d", self.path, checkpoint.kind, checkpoint.step)
        return checkpoint


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """A numpy Generator's state as JSON (big integers stay exact in Python's json)."""
    return rng.bit_generator.state


def restore_rng(rng: np.random.Generator, state: Mapping[str, Any]) -> None:
    try:
        rng.bit_generator.state = dict(state)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"bad RNG state in checkpoint: {exc}") from None
