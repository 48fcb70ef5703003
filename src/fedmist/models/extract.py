"""Edge side of MistNet: one batched pass over local images -> privacy-protected packed bits (DESIGN 5.2-5.4).

The edge never needs the cloud layers. Extraction runs in eval mode without gradients and in batches
(never batch size 1, whose per-call overhead dominates on small convolutions). Chunks are yielded as they
are produced so a transmitter can stream them with a bounded buffer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from fedmist.data.tensors import model_input, probe_batch
from fedmist.models.split import drop_trailing_relus
from fedmist.privacy.channel import binarize, pack_bits, randomized_response
from fedmist.wire.arrays import decode_arrays
from fedmist.wire.envelope import ProtocolError

InferenceKernel = Callable[[nn.Module, torch.Tensor], torch.Tensor | None]
# (clean bits of a batch, index of its first sample) -> the noisy bits: an edge's keyed, coupled noise
NoiseFn = Callable[[torch.Tensor, int], torch.Tensor]


def _generator(seed: int | None) -> np.random.Generator:
    """Seeded for reproducible benchmarks and resumable uploads (the edge's secret seed); otherwise from OS
    entropy, since predictable noise is no privacy. numpy's PCG64: see ``randomized_response`` for why."""
    return np.random.default_rng(None if seed is None else int(seed))


def _check_batch(batch_size: int) -> int:
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 for extraction (per-image passes are far slower), got {batch_size}")
    return int(batch_size)


def _max_pool_2x2(module: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """2x2/stride-2 max-pooling as two strided maxima; ``None`` when the module is configured otherwise.

    Measured ~10x faster than ``F.max_pool2d`` on NCHW inputs on this CPU (0.12 s vs 1.3 s per 25k
    LeNet images), where pooling was the single largest cost of extraction. Same values exactly.
    """
    plain = (isinstance(module, nn.MaxPool2d) and module.kernel_size in (2, (2, 2)) and
             module.stride in (2, (2, 2), None) and
             module.padding in (0, (0, 0)) and module.dilation in (1, (1, 1)) and
             not module.ceil_mode and not module.return_indices and x.dim() == 4)
    if not plain:
        return None
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    rows = torch.maximum(x[..., 0:h:2, :w], x[..., 1:h:2, :w])
    return torch.maximum(rows[..., 0::2], rows[..., 1::2])


def inference_kernels() -> dict[type[nn.Module], InferenceKernel]:
    """Faster equivalents for some module types during extraction (inference only, no autograd)."""
    return {nn.MaxPool2d: _max_pool_2x2}


def _run_edge(edge: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run the edge; for a sequential edge, module by module with the faster kernels where they apply."""
    if not isinstance(edge, nn.Sequential):
        return edge(x)
    kernels = inference_kernels()
    for module in drop_trailing_relus(edge):
        kernel = kernels.get(type(module))
        out = kernel(module, x) if kernel is not None else None
        x = out if out is not None else module(x)
    return x


def _bits_of(edge: nn.Module, images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Binarized edge output of one batch (built-in uint8 images or a user loader's tensors), as ``(B, r)`` bool."""
    return binarize(_run_edge(edge, model_input(images))).flatten(1)


def feature_shape_of(edge: nn.Module, image_shape: tuple[int, ...] = (28, 28),
                     probe: torch.Tensor | None = None) -> tuple[int, ...]:
    """Shape of one sample's edge output (e.g. ``(6, 14, 14)``), from a probe forward pass over gray
    ``image_shape`` images, or over ``probe`` (a batch shaped like the user's inputs) when given."""
    was_training = edge.training
    edge.eval()
    with torch.inference_mode():
        out = edge(torch.zeros((2, 1, *image_shape)) if probe is None else probe)
    edge.train(was_training)
    return tuple(out.shape[1:])


def iter_extract(
    edge: nn.Module, images: np.ndarray | torch.Tensor, eps: float, batch_size: int = 1000, seed: int | None = None,
    noise: NoiseFn | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start_index, packed uint8 (B, nbytes))`` per batch: binarize, randomized response, pack.
    ``noise`` replaces the seeded randomized response at ``eps`` (the edges' keyed noise,
    ``fedmist.privacy.noise``); ``seed`` serves benchmarks and audits."""
    batch_size = _check_batch(batch_size)
    gen = _generator(seed)
    was_training = edge.training
    edge.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                bits = _bits_of(edge, images[start : start + batch_size])
                noisy = noise(bits, start) if noise is not None else randomized_response(bits, eps, gen)
                yield start, pack_bits(noisy.numpy())
    finally:
        edge.train(was_training)


def extract_bits(
    edge: nn.Module, images: np.ndarray | torch.Tensor, eps: float, batch_size: int = 1000, seed: int | None = None
) -> tuple[np.ndarray, tuple[int, ...]]:
    """All packed noisy bits ``(N, ceil(r / 8))`` and the per-sample feature shape."""
    shape = feature_shape_of(edge, probe=probe_batch(images))
    r = int(np.prod(shape))
    out = np.empty((len(images), (r + 7) // 8), dtype=np.uint8)
    for start, chunk in iter_extract(edge, images, eps, batch_size, seed):
        out[start : start + len(chunk)] = chunk
    return out, shape


def channel_features(edge: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Packed clean bits (binarize, no flipping): the channel the cloud is evaluated through (DESIGN 5.7)."""
    packed, _ = extract_bits(edge, images, float("inf"), batch_size, seed=0)
    return packed


def load_edge_weights(edge: nn.Module, body: bytes) -> nn.Module:
    """Load the edge weights a TASK message carries into ``edge``; ProtocolError when they are not exactly
    the edge part's tensors (names, shapes), so a wrong or hostile task never half-loads a model."""
    arrays = decode_arrays(body)
    expected = set(edge.state_dict())
    if set(arrays) != expected:
        raise ProtocolError(f"edge weights hold {sorted(arrays)[:4]}..., expected {sorted(expected)[:4]}...")
    try:
        edge.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in arrays.items()})
    except RuntimeError as exc:
        raise ProtocolError(f"edge weights do not fit the model: {str(exc).splitlines()[0]}") from None
    return edge
