"""fedmist: federated learning between edge devices and a cloud (MistNet and the FedAvg family).

``import fedmist`` is light (no torch): the Python API's names load on first use.

>>> import fedmist
>>> job = fedmist.Job.from_manifests(["examples/mnist-fedavg/job.yaml"])  # doctest: +SKIP
>>> result = job.run()  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Edge", "Job", "RunResult", "pretrain", "__version__"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from fedmist.api import Edge, Job, RunResult, pretrain

_LAZY = frozenset({"Edge", "Job", "RunResult", "pretrain"})


def __getattr__(name: str) -> Any:
    """Load the Python API (:mod:`fedmist.api`) on first use, so ``import fedmist`` stays instant."""
    if name in _LAZY:
        from fedmist import api

        return getattr(api, name)
    raise AttributeError(f"module 'fedmist' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
