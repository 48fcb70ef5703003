"""What noise an edge says it applied, checked against the job's floor (issue 17: the edge decides its own privacy).

Each MistNet edge applies the stricter (smaller) of its own ``epsilon`` and the aggregator's, and names the value
it used in every records layout. The aggregator's value is the job's floor: an edge may be stricter, never
looser. An edge claiming a looser value is broken or hostile, and its records are refused: the cloud would
otherwise debias them with the wrong flip probability, and the job's privacy figures would be false.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedmist.wire import messages as msg
from fedmist.wire.envelope import ProtocolError


@dataclass(frozen=True)
class EdgeEpsilon:
    """The budgets one edge applied: ``label_epsilon`` None = labels in clear."""

    epsilon: float
    label_epsilon: float | None

    def as_text(self) -> dict[str, str]:
        """The canonical text form stored in a feature store's manifest and shown in status."""
        return {"epsilon": msg.format_epsilon(self.epsilon),
                "label_epsilon": "" if self.label_epsilon is None else msg.format_epsilon(self.label_epsilon)}


def _budget(text: str, what: str) -> float:
    """A positive number or ``inf``, as every epsilon of a job must be (spec/params.py's one rule)."""
    return msg.epsilon_field(text, what)


def check_edge_epsilon(layout: msg.RecordsMeta, task: msg.TaskMeta) -> EdgeEpsilon:
    """The edge's declared budgets, refused (ProtocolError naming both values) when looser than the floor."""
    floor = _budget(task.epsilon, "the job's epsilon")
    epsilon = _budget(layout.epsilon, "epsilon")
    if epsilon > floor:
        raise ProtocolError(f"epsilon {layout.epsilon} is looser than the job's floor {task.epsilon}; "
                            f"an edge applies the stricter of its own epsilon and the job's")
    label = _budget(layout.label_epsilon, "label_epsilon") if layout.label_epsilon else None
    if task.label_epsilon:
        label_floor = _budget(task.label_epsilon, "the job's label_epsilon")
        if label is None:
            raise ProtocolError(f"labels sent in clear, looser than the job's label_epsilon floor {task.label_epsilon}")
        if label > label_floor:
            raise ProtocolError(f"label_epsilon {layout.label_epsilon} is looser than the job's floor "
                                f"{task.label_epsilon}; an edge applies the stricter of its own label_epsilon and the job's")
    return EdgeEpsilon(epsilon, label)
