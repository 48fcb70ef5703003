"""What a FedAvg-family aggregator accepts as a trainer's update, judged from the first frame's header.

Why: the job token is shared by every trainer, so an authenticated trainer is not a trusted one.

- Size. Every trainer runs the model the aggregator chose, so its update is the global model's layout
  re-encoded: the same tensor names, shapes and dtypes, hence exactly the same safetensors bytes count
  (``wire.arrays.safetensors_layout`` is deterministic). A FIT_RESULT announcing any other size -- in its
  frame header, or as its S3 object's size -- is refused before a byte of it is buffered, so a peer cannot make
  the aggregator read, hold or download more than one model's worth.
- Sample count. ``num_samples`` weights the update in FedAvg and the FedOpt family. A trainer may not claim more
  samples than its HELLO declared (the dataset it connected with), nor more than the job's ``max_samples`` when
  set (the HELLO itself is the trainer's own word, so only a job-side cap stops a peer that declares 10**10 up
  front), and not 0: an update trained on no samples carries nothing and, alone in a round, would make the
  weighted mean 0/0. Such an update is rejected (logged, read to its end and dropped); the round goes on.
"""

from __future__ import annotations

from fedmist.transport.carrier import OBJECT_META
from fedmist.wire.envelope import Envelope, ProtocolError


def announced_size(envelope: Envelope) -> int:
    """The update's size: its S3 object's (checked again by the carrier) or its frames' declared size."""
    ref = envelope.meta.get(OBJECT_META)
    if isinstance(ref, dict) and type(ref.get("size")) is int:
        return int(ref["size"])
    return envelope.size


def check_update_size(envelope: Envelope, expected: int) -> None:
    """Refuse (ProtocolError: the peer is dropped) an update whose announced size is not the model's
    exact encoded size; ``expected`` 0 means unknown (then only the transport's limits apply)."""
    size = announced_size(envelope)
    if expected and size != expected:
        raise ProtocolError(f"'{envelope.type}' announces {size} bytes; the global model's layout encodes to "
                            f"exactly {expected}")


def sample_count_problem(num_samples: int, declared: int, cap: int) -> str | None:
    """Why ``num_samples`` may not weight this update (None when it may): 0, more than the HELLO's
    ``declared`` count, or more than the job's ``cap`` (0: no cap)."""
    if num_samples < 1:
        return f"update reports {num_samples} samples: an update must come from at least one"
    if num_samples > declared:
        return f"update reports {num_samples} samples, but the trainer's HELLO declared {declared}"
    if cap and num_samples > cap:
        return f"update reports {num_samples} samples, more than the job's max_samples {cap}"
    return None
