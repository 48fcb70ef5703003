"""Server optimizers of "Adaptive Federated Optimization" (Reddi et al., ICLR 2021, Algorithm 2).

Each round the server treats ``delta = avg(client weights) - global`` as a pseudo-gradient and takes one
adaptive step with it::

    m_t = beta_1 * m_{t-1} + (1 - beta_1) * delta
    v_t = v_{t-1} + delta^2                                            (FedAdagrad)
    v_t = v_{t-1} - (1 - beta_2) * delta^2 * sign(v_{t-1} - delta^2)   (FedYogi)
    v_t = beta_2 * v_{t-1} + (1 - beta_2) * delta^2                    (FedAdam)
    x_{t+1} = x_t + server_learning_rate * m_t / (sqrt(v_t) + tau)

As in the paper: ``m`` starts at 0, ``v`` at ``tau^2`` (its ``v_{-1} >= tau^2``), there is no bias correction,
all three keep the ``beta_1`` momentum, and FedAdagrad ignores ``beta_2``. The average is sample-weighted
and streamed exactly like FedAvg's (the paper's uniform mean is the equal-samples case). ``m`` and ``v`` are
kept in the model's accumulation dtype (float32 for a float32 model) -- two extra model copies of state --
and checkpoint through :meth:`FedOpt.state_dict` as ``m/<name>`` and ``v/<name>``. BatchNorm running statistics
(``aggregate.is_statistic``) are not parameters: they take the plain weighted average and keep no ``m``/``v``.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np

from fedmist.strategy.aggregate import accumulator_dtype, is_floating, is_statistic
from fedmist.strategy.fedavg import FedAvg
from fedmist.strategy.types import Weights

_SLOTS = ("m", "v")


class FedOpt(FedAvg):
    """Shared machinery of the adaptive server optimizers; subclasses define the second-moment update."""

    def __init__(
        self,
        *,
        server_learning_rate: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-9,
        **kwargs: Any,
    ) -> None:
        if not (math.isfinite(server_learning_rate) and server_learning_rate > 0):
            raise ValueError(f"server_learning_rate must be > 0, got {server_learning_rate}")
        for name, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {beta}")
        if not (math.isfinite(tau) and tau > 0):
            raise ValueError(f"tau must be > 0, got {tau}")
        super().__init__(**kwargs)
        self.server_learning_rate = float(server_learning_rate)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.tau = float(tau)
        self.m: Weights = {}
        self.v: Weights = {}

    @abstractmethod
    def second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        """``v_t`` from ``v_{t-1}`` and ``delta^2`` (a new array; inputs are not modified)."""

    def _finish_round(self, round: int, global_weights: Weights) -> Weights:
        average = self._average(round)
        out: Weights = {}
        new_m: Weights = {}
        new_v: Weights = {}
        for key, ref in global_weights.items():
            if not is_floating(ref) or is_statistic(key):
                # counters are not optimised (FedAvg's rule: the first result's); BatchNorm running statistics
                # are averaged, not stepped: Adam's sign-like first steps can push a running variance below 0
                out[key] = average[key]
                continue
            dtype = accumulator_dtype(ref.dtype)
            delta = average[key].astype(dtype) - ref.astype(dtype, copy=False)
            m = self._slot(self.m, "m", key, ref, 0.0)
            v = self._slot(self.v, "v", key, ref, self.tau**2)
            m = self.beta_1 * m + (1.0 - self.beta_1) * delta
            v = self.second_moment(v, np.square(delta))
            step = self.server_learning_rate * m / (np.sqrt(v) + self.tau)
            out[key] = (ref.astype(dtype, copy=False) + step).astype(ref.dtype, copy=False)
            new_m[key], new_v[key] = m, v
        self.m, self.v = new_m, new_v  # committed only once every entry succeeded
        return out

    @staticmethod
    def _slot(state: Weights, slot: str, key: str, ref: np.ndarray, initial: float) -> np.ndarray:
        """The stored ``m``/``v`` entry, or its initial value on the first round."""
        if key not in state:
            return np.full(ref.shape, initial, dtype=accumulator_dtype(ref.dtype))
        value = state[key]
        if value.shape != ref.shape:
            raise ValueError(f"optimizer state {slot}/{key} has shape {value.shape}, model has {ref.shape}")
        return value

    def state_dict(self) -> dict[str, np.ndarray]:
        """``{"m/<name>": ..., "v/<name>": ...}``: flat, so it saves as safetensors beside the model."""
        return {f"{slot}/{key}": arr.copy() for slot in _SLOTS for key, arr in getattr(self, slot).items()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore :meth:`state_dict` output (copied); unknown keys or non-float arrays are rejected."""
        slots: dict[str, Weights] = {slot: {} for slot in _SLOTS}
        for name, arr in state.items():
            slot, sep, key = name.partition("/")
            if not sep or slot not in slots or not key:
                raise ValueError(f"{type(self).__name__}: unexpected state key {name!r} (want m/<name> or v/<name>)")
            arr = np.asarray(arr)
            if not is_floating(arr):
                raise ValueError(f"{type(self).__name__}: state {name} has dtype {arr.dtype}, expected float")
            slots[slot][key] = np.array(arr, dtype=accumulator_dtype(arr.dtype), copy=True)
        self.m, self.v = slots["m"], slots["v"]


class FedAdagrad(FedOpt):
    """Adagrad on the server: ``v`` sums every squared pseudo-gradient, so steps shrink over rounds."""

    def second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        return np.asarray(v + delta_sq)


class FedYogi(FedOpt):
    """Yogi on the server: ``v`` moves additively toward ``delta^2``, so it cannot collapse as fast as Adam's."""

    def second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        return np.asarray(v - (1.0 - self.beta_2) * delta_sq * np.sign(v - delta_sq))


class FedAdam(FedOpt):
    """Adam on the server (without bias correction, as in Reddi et al.)."""

    def second_moment(self, v: np.ndarray, delta_sq: np.ndarray) -> np.ndarray:
        return self.beta_2 * v + (1.0 - self.beta_2) * delta_sq
