"""Tensor payloads as safetensors (numpy side only, so the wire layer never imports torch).

safetensors is a plain header + raw little-endian buffers format: loading it cannot execute code, unlike a
pickled ``.pth``. Every decoded array is checked for an allowed dtype and finite values before use.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from fedmist.wire.envelope import ProtocolError

_ALLOWED_KINDS = frozenset("fiub")  # float, signed int, unsigned int, bool


def encode_arrays(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialise named arrays to safetensors bytes (contiguous copies where needed)."""
    clean = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
    return _st_save(clean, metadata=dict(metadata) if metadata else None)


def decode_arrays(data: bytes | bytearray | memoryview, *, max_arrays: int = 100_000) -> dict[str, np.ndarray]:
    """Parse safetensors bytes into arrays, rejecting odd dtypes and non-finite floats."""
    try:
        arrays = _st_load(bytes(data))
    except (SafetensorError, ValueError, OverflowError) as exc:
        raise ProtocolError(f"bad safetensors payload: {str(exc).splitlines()[0][:120]}") from None
    if len(arrays) > max_arrays:
        raise ProtocolError(f"safetensors payload holds {len(arrays)} arrays, limit {max_arrays}")
    for name, array in arrays.items():
        if array.dtype.kind not in _ALLOWED_KINDS:
            raise ProtocolError(f"array '{name}' has unsupported dtype {array.dtype}")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ProtocolError(f"array '{name}' holds non-finite values")
    return arrays
