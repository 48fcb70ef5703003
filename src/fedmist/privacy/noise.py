"""Edge noise that cannot be subtracted: keyed on the edge's secret AND the data it covers.

Why keyed, and on what. An edge must reproduce the very same noisy bits when it resumes an interrupted upload
(the aggregator checks the whole upload's hash), so its noise is a function of a secret seed kept in its state
folder. But noise that depended on the seed alone would be reused for *other* data: two releases ``f(x1)^n``
and ``f(x2)^n`` with the same ``n`` hand the cloud ``f(x1)^f(x2)`` in clear. So every noise stream is keyed
``HMAC-SHA256(secret, data fingerprint || what the bits are || purpose)``: the data fingerprint is a SHA-256
over the images and labels in order (computed once at load), "what the bits are" names the edge model that
turns images into bits (features made by another model get independent noise, for the same reason), and the
purpose separates feature noise from label noise.

What reuse then implies (the edge releases the SAME data again, e.g. in a second job at another epsilon).
Naive reuse of the same uniforms, "flip where u < q(eps)", nests the flips (a bit flipped at the larger eps
is also flipped at the smaller one), but the PAIR of releases then leaks: wherever the two disagree, the
larger-eps release holds the clean bit for certain, an unbounded privacy loss. So the streams here are coupled
as a Markov chain in the noise level instead, which is what makes "the pair reveals no more than the
larger-epsilon release alone" true:

* each value (a feature bit, or a label among k classes) is exposed to *replacement events* of a rate-1
  Poisson process in "time" ``t``; an event replaces the value by a fresh uniform symbol (a fair coin for
  bits), and the release at ``eps`` is the value at time ``t(eps)``, with
  ``e^-t = (e^eps - 1) / (e^eps + k - 1)`` (``tanh(eps / 2)`` for bits; ``t(inf) = 0``);
* at a single eps this is exactly randomized response: a bit flips with probability ``1 / (1 + e^eps)``,
  a label is kept with probability ``e^eps / (e^eps + k - 1)`` and otherwise moves to one of the other
  ``k - 1`` classes uniformly (``fedmist.privacy.channel``);
* the replacement events are nested: an event before ``t(eps_a)`` is also before ``t(eps_b)`` for
  ``eps_b < eps_a``; and because a Poisson process has independent increments, the smaller-eps release is
  the larger-eps one passed through further noise that does not depend on the clean value
  (``P(z_b | z_a, x) = P(z_b | z_a)``). The pair is thus post-processing of the larger-eps release: its
  guarantee is the largest epsilon released, not the sum, which is the rule the privacy ledger applies
  (``fedmist.privacy.ledger``) to releases of the same data by the same edge model.

Releasing the same data at the same eps again gives the identical bits (nothing new is revealed), so a resumed
or repeated upload costs nothing. Each element's randomness is addressed by its index (round ``m`` of element
``e`` is a keyed mix of ``(m, e)``), so the bits do not depend on how the data is batched or resumed.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from fedmist.privacy.channel import _check_eps

FINGERPRINT_VERSION = b"fedmist-data-v1"
MAX_ROUNDS = 100_000  # replacement rounds per batch; the Poisson tail ends far earlier (eps >= 1e-9)
_TWO_53 = float(2 ** 53)
CHUNK = 1 << 16  # elements per block of the round loop (see CoupledNoise.apply)


def data_fingerprint(images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> str:
    """SHA-256 over the images and labels in order (dtype and shape included): another file, another order
    or one changed pixel or label is another fingerprint, hence fresh noise."""
    digest = hashlib.sha256(FINGERPRINT_VERSION)
    for array in (images, labels):
        values = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        values = np.ascontiguousarray(values)
        digest.update(f"{values.dtype.str}{values.shape}".encode())
        digest.update(memoryview(values).cast("B"))
    return digest.hexdigest()


def files_fingerprint(paths: Iterable[tuple[Path, Path]]) -> str:
    """SHA-256 over (image file, label file) pairs in order (a missing label file counts as empty): the
    fingerprint of a detection dataset, whose images are read lazily."""
    digest = hashlib.sha256(FINGERPRINT_VERSION + b"-files")
    for image, label in paths:
        for path in (image, label):
            content = path.read_bytes() if path.exists() else b""
            digest.update(len(content).to_bytes(8, "little"))
            digest.update(content)
    return digest.hexdigest()


def noise_key(secret: int | bytes, data: str, features: str, purpose: str) -> bytes:
    """``HMAC-SHA256(secret, data || features || purpose)``: the key of one noise stream."""
    raw = secret if isinstance(secret, bytes) else int(secret).to_bytes(16, "little")
    return hmac.new(raw, f"{data}\0{features}\0{purpose}".encode(), hashlib.sha256).digest()


def replacement_time(eps: float, k: int) -> float:
    """``t(eps)`` for k symbols: ``ln((e^eps + k - 1) / (e^eps - 1))``, 0 at eps = inf, inf at eps = 0."""
    eps = _check_eps(eps)
    if math.isinf(eps):
        return 0.0
    if eps == 0.0:
        return math.inf
    return math.log1p(k / math.expm1(eps)) if eps < 700 else 0.0


class CoupledNoise:
    """One edge's noise stream over ``k``-symbol values laid out ``(N, width)`` (bits: ``k = 2``)."""

    def __init__(self, key: bytes, k: int = 2) -> None:
        if k < 2:
            raise ValueError(f"noise needs k >= 2 symbols, got {k}")
        self.key = key
        self.k = int(k)

    def _round_keys(self, round_index: int) -> tuple[np.uint64, np.uint64, np.uint64]:
        digest = hashlib.sha256(self.key + round_index.to_bytes(8, "little")).digest()
        return tuple(np.uint64(int.from_bytes(digest[i:i + 8], "little")) for i in (0, 8, 16))  # type: ignore[return-value]

    @staticmethod
    def _word(keys: tuple[np.uint64, np.uint64, np.uint64], elements: np.ndarray, lane: int) -> np.ndarray:
        """64-bit word ``lane`` (0: spacing, 1: symbol) of each element (by global index) in one replacement
        round: a keyed counter-mode mix, so any element's word is computed directly, without the others'."""
        base = elements.astype(np.uint64) * np.uint64(2) + keys[0] + np.uint64(lane)
        return _mix(_mix(base) ^ keys[1 + lane])

    def apply(self, values: np.ndarray | torch.Tensor, eps: float, start: int) -> np.ndarray:
        """The release at ``eps`` of ``values`` (shape ``(B, width)``, rows ``start .. start + B - 1`` of the
        edge's data); bool in, bool out for bits, int64 labels in ``[0, k)`` otherwise."""
        array = values.numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        horizon = replacement_time(eps, self.k)
        out = array.copy()
        if horizon == 0.0 or out.size == 0:
            return out
        flat = out.reshape(-1)
        first = start * (out.size // len(out))
        floor = math.exp(-horizon)  # an event happens before the horizon while the uniforms' product stays above
        # Blocks of CHUNK elements keep the round loop's uint64/float64 temporaries in cache (one pass over a
        # whole edge's 30 M bits at once is memory-bound). Each element's words depend only on its global
        # index, so the blocking does not change a single output bit.
        for offset in range(0, flat.size, CHUNK):
            self._replace(flat[offset:offset + CHUNK], first + offset, floor, eps)
        return out

    def _replace(self, flat: np.ndarray, first: int, floor: float, eps: float) -> None:
        """Run the replacement rounds over ``flat`` (a view, changed in place), elements ``first ..``."""
        survival = np.ones(flat.size)
        active = np.arange(flat.size)
        for round_index in range(MAX_ROUNDS):
            keys = self._round_keys(round_index)
            spacing = self._word(keys, active + first, 0)
            survival[active] *= ((spacing >> np.uint64(11)).astype(np.float64) + 0.5) / _TWO_53
            active = active[survival[active] >= floor]
            if active.size == 0:
                return
            symbol = self._word(keys, active + first, 1)
            chosen = ((symbol >> np.uint64(32)) * np.uint64(self.k)) >> np.uint64(32)
            flat[active] = chosen.astype(flat.dtype)
        raise RuntimeError(f"noise at epsilon {eps} needs more than {MAX_ROUNDS} replacement rounds")


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer (wrapping uint64 arithmetic): a fast bijective mixer of counters. Not a
    cryptographic PRF; the secret is the 256-bit HMAC key its constants come from, as it was the PCG64 seed."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def randomized_bits(noise: CoupledNoise, bits: torch.Tensor, eps: float, start: int) -> torch.Tensor:
    """Randomized response over a batch of feature bits ``(B, r)`` (bool), coupled across epsilons."""
    return torch.from_numpy(noise.apply(bits.to(torch.bool), eps, start))


def randomized_labels(noise: CoupledNoise, labels: np.ndarray, eps: float) -> np.ndarray:
    """k-ary randomized response over all of an edge's labels (``noise.k`` classes), coupled across epsilons."""
    values = np.asarray(labels).astype(np.int64).reshape(-1, 1)
    if values.size and (int(values.min()) < 0 or int(values.max()) >= noise.k):
        raise ValueError(f"labels must lie in [0, {noise.k}), got range [{int(values.min())}, {int(values.max())}]")
    return noise.apply(values, eps, 0).reshape(-1)
