"""Which clients train in a round: seeded per-round draws with Flower's knobs (``fraction_fit``, ``min_fit_clients``,
``min_available_clients``), pure and transport-free.

Why each round draws from its own stream, ``Generator(PCG64(SeedSequence([seed, round])))``, instead of one
generator advanced round after round: the sample of round r then depends only on the seed, r and the pool of
available clients. A trainer that drops out in round 3 does not shift the draws of round 7, a resumed job draws
exactly what an uninterrupted one would (given the same pool), and a simulation of 10,000 clients needs no
state beyond the seed. :class:`ClientSampler` still records what was drawn (a chain digest over every round) so a
checkpoint carries the sequence and a resume can prove that it continues it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def round_generator(seed: int, round: int) -> np.random.Generator:
    """The round's own random stream: a function of ``(seed, round)`` only."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(round)])))


def sample_size(num_available: int, fraction: float, min_fit: int) -> int:
    """``max(min_fit, ceil(fraction * available))``, never more than are available (0.3 * 10 is 3, not 4)."""
    wanted = math.ceil(fraction * num_available - 1e-9)
    return min(num_available, max(min_fit, wanted))


def draw(pool: Sequence[str], k: int, rng: np.random.Generator) -> list[str]:
    """``k`` distinct names of ``pool`` (sorted first, so the caller's order never matters), returned sorted."""
    ordered = sorted(set(pool))
    if k >= len(ordered):
        return ordered
    chosen = rng.choice(len(ordered), size=k, replace=False)
    return [ordered[i] for i in sorted(int(i) for i in chosen)]


def chain_digest(previous: str, round: int, selected: Sequence[str]) -> str:
    """A running SHA-256 over every round's selection: two runs agree on it iff they drew the same sequence."""
    return hashlib.sha256(f"{previous}|{round}|{','.join(selected)}".encode()).hexdigest()


class ClientSampler:
    """The engine's side of sampling: each round's random stream, and a record of what was drawn.

    Who is drawn, and how many, is the strategy's rule (:meth:`fedmist.strategy.Strategy.configure_fit`, with
    ``fraction_fit``, ``min_fit_clients`` and ``min_available_clients``; a user's strategy may choose its own
    way); the sampler hands it the round's generator and records the result, so the real aggregator and
    ``fedmist simulate`` sample identically and a checkpoint carries the sequence.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self.last_round = 0
        self.last_selected: list[str] = []
        self.digest = ""

    def rng(self, round: int) -> np.random.Generator:
        """The generator the strategy draws round ``round`` from."""
        return round_generator(self.seed, round)

    def configure(self, strategy: Any, round: int, global_weights: Any, available: Sequence[str]) -> Any:
        """``strategy.configure_fit`` for ``round`` with the round's generator; the selection is recorded.

        Raises :class:`InsufficientWorkersError` (from the strategy) when too few clients are available, and
        ``ValueError`` when rounds do not increase (a resume continues the recorded chain, never repeats it).
        """
        if round <= self.last_round:
            raise ValueError(f"round {round} sampled after round {self.last_round}")
        instructions = strategy.configure_fit(round, global_weights, list(available), self.rng(round))
        self.record(round, instructions.workers)
        return instructions

    def record(self, round: int, selected: Sequence[str]) -> None:
        self.digest = chain_digest(self.digest, round, selected)
        self.last_round, self.last_selected = int(round), list(selected)

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state for a checkpoint's header: the seed, the last round, its selection, the chain digest."""
        return {"seed": self.seed, "last_round": self.last_round, "last_selected": list(self.last_selected),
                "digest": self.digest}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue a recorded sequence; one drawn with another seed is refused (its rounds are not ours)."""
        if int(state.get("seed", self.seed)) != self.seed:
            raise ValueError(f"sampler seed is {self.seed}, the checkpoint's is {state['seed']!r}")
        self.last_round = int(state.get("last_round", 0))
        self.last_selected = [str(n) for n in state.get("last_selected", [])]
        self.digest = str(state.get("digest", ""))
