"""Kubernetes resource quantities (``8Gi``, ``512Mi``, ``2G``, ``1e9``, ``1500m``) as whole bytes.

Why our own parser: the manifests are Kubernetes PodTemplateSpecs, and ``resources.limits.memory`` must mean
locally exactly what it means to the kubelet, so the same suffix table and round-up rule apply.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Final

_MULTIPLIERS: Final[dict[str, Decimal]] = {
    "": Decimal(1),
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
# Exponent form is tried before the suffixes, so "1e9" is 10^9 and "1E" is one exa.
_QUANTITY: Final = re.compile(
    r"^(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<exponent>[eE][+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$"
)
QUANTITY_PROBLEM: Final = "not a Kubernetes quantity (e.g. 512Mi, 8Gi, 2G, 1e9)"


def parse_quantity_bytes(value: object) -> int:
    """Bytes for a memory quantity; fractions round up, as Kubernetes does. Raises ValueError with a message
    fit for a one-line manifest error."""
    if isinstance(value, bool):
        raise ValueError(QUANTITY_PROBLEM)
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(QUANTITY_PROBLEM)
        amount = Decimal(repr(value))
    elif isinstance(value, str):
        amount = _parse_text(value.strip())
    else:
        raise ValueError(QUANTITY_PROBLEM)
    if amount < 0:
        raise ValueError("must not be negative")
    return int(amount.to_integral_value(rounding="ROUND_CEILING"))


def _parse_text(text: str) -> Decimal:
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(QUANTITY_PROBLEM)
    try:
        number = Decimal(match["number"])
        if match["exponent"]:
            return number * (Decimal(10) ** int(match["exponent"][1:]))
        return number * _MULTIPLIERS[match["suffix"] or ""]
    except (InvalidOperation, OverflowError):
        raise ValueError(QUANTITY_PROBLEM) from None
