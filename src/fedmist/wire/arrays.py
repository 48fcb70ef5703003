"""Tensor payloads on the wire as safetensors (numpy side only, so the wire layer never imports torch).

safetensors is a plain header + raw little-endian buffers format: loading it cannot execute code, unlike a
pickled ``.pth``. Every decoded array is checked for an allowed dtype and finite values before use.

Small payloads (features, test sets) go through :func:`encode_arrays` / :func:`decode_arrays`. Model weights go
through :func:`encode_weights` / :func:`decode_weights`: safetensors bytes out (written straight into one buffer),
zero-copy views in. Why not ``decode_arrays`` for them: it copies the payload (``bytes(data)``) and then every
tensor, so a received 1 GB update would briefly cost three copies. Here the safetensors header is parsed and
validated by hand and every tensor becomes a read-only ``np.frombuffer`` view into the one received buffer, which
is what lets the aggregator fold an update into its running sum while holding only that buffer (DESIGN section 6).
The encoder likewise writes every tensor once, straight into one preallocated buffer (``safetensors.numpy.save``
first copies each tensor with ``tobytes`` and then joins them: two extra model copies at the peak), and can free
its input tensor by tensor as it goes (``consume``), so turning the aggregated model into the next global payload
costs one tensor of extra memory, not one model. The format is the same safetensors everyone reads (tensors ordered
by alignment, header padded to 8 bytes), so anything it writes loads elsewhere unchanged.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import BinaryIO, NamedTuple

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from fedmist.wire.envelope import ProtocolError

MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_TENSORS = 100_000


def _dtypes() -> dict[str, np.dtype]:
    """safetensors dtype names -> little-endian numpy dtypes (the kinds a model state dict holds)."""
    return {
        "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
        "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
        "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
    }


def safetensors_layout(weights: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
                       ) -> tuple[bytes, list[tuple[str, np.dtype, tuple[int, ...], int]]]:
    """The safetensors prefix (8-byte length + padded JSON header) and the tensors in data order.

    Shared by :func:`encode_weights` (one buffer) and :func:`write_weights` (straight to a file), so both
    write the same bytes.
    """
    names = {dtype: name for name, dtype in _dtypes().items()}
    layout: list[tuple[str, np.dtype, tuple[int, ...], int]] = []
    for key, value in weights.items():
        array = np.asarray(value)
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        if dtype not in names:
            raise ValueError(f"tensor {key!r}: dtype {array.dtype} has no safetensors name here")
        layout.append((key, dtype, array.shape, array.nbytes))
    layout.sort(key=lambda item: (-item[1].itemsize, item[0]))  # aligned: widest dtypes first, as safetensors does
    header: dict[str, dict] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for key, dtype, shape, nbytes in layout:
        header[key] = {"dtype": names[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw, layout


def encode_weights(weights: Mapping[str, np.ndarray], *, consume: bool = False,
                   lazy: bool = False) -> bytearray | memoryview:
    """Serialise named arrays as safetensors into one new buffer; with ``consume`` (``weights`` must then be
    a mutable mapping the caller owns) each entry is removed as soon as it is copied, so its memory can go.

    ``lazy`` returns a writable memoryview of zero pages the OS maps only as they are written (``np.zeros``
    over calloc) instead of a ``bytearray``, which CPython zero-fills at once. With ``consume`` that is what
    keeps the round's end at two model copies: the new payload grows while the aggregate it replaces shrinks,
    tensor by tensor, instead of the whole payload being touched before the first tensor is freed.
    """
    prefix, layout = safetensors_layout(weights)
    size = len(prefix) + sum(nbytes for *_, nbytes in layout)
    out: bytearray | memoryview = memoryview(np.zeros(size, np.uint8)) if lazy else bytearray(size)
    out[:len(prefix)] = prefix
    start = len(prefix)
    for key, dtype, shape, nbytes in layout:
        target = np.frombuffer(out, dtype=dtype, count=nbytes // dtype.itemsize, offset=start).reshape(shape)
        np.copyto(target, np.asarray(weights[key]), casting="equiv")
        del target
        start += nbytes
        if consume:
            del weights[key]  # type: ignore[attr-defined]
    return out


def write_weights(handle: BinaryIO, weights: Mapping[str, np.ndarray],
                  metadata: Mapping[str, str] | None = None) -> int:
    """Write named arrays as safetensors to ``handle`` tensor by tensor; return the bytes written.

    Why: a checkpoint of a 1 GB model must not first become a 1 GB ``bytes`` (``safetensors.numpy.save``
    makes two); a contiguous little-endian array is written from its own memory, anything else costs one
    tensor's copy.
    """
    prefix, layout = safetensors_layout(weights, metadata)
    handle.write(prefix)
    written = len(prefix)
    for key, dtype, _, nbytes in layout:
        array = np.ascontiguousarray(weights[key], dtype=dtype).reshape(-1)
        if nbytes:
            handle.write(memoryview(array).cast("B"))
        written += nbytes
    return written


class TensorSpec(NamedTuple):
    """One tensor of a safetensors payload, as its header declares it (offsets relative to the data region)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    start: int
    end: int


def header_length(prefix: bytes | bytearray | memoryview, size: int) -> int:
    """The JSON header length from a payload's first 8 bytes, checked against the payload's ``size``."""
    (header_len,) = struct.unpack_from("<Q", prefix, 0)
    if header_len == 0 or header_len > min(MAX_HEADER_BYTES, size - 8):
        raise ProtocolError(f"safetensors header length {header_len} is out of range")
    return int(header_len)


def parse_header(raw: bytes | bytearray | memoryview, data_len: int) -> list[TensorSpec]:
    """Validate a safetensors JSON header against a data region of ``data_len`` bytes.

    Returns the tensors in header order. Why separate from :func:`decode_weights`: the aggregator's streaming
    fold (``update_stream``) must judge an update -- dtypes, shapes, offsets -- from its header alone, before
    any of its values arrive. Raises ProtocolError naming the tensor for a bad dtype, shape, overlapping or
    out-of-range data.
    """
    try:
        header = json.loads(bytes(raw))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"safetensors header is not JSON: {str(exc)[:100]}") from None
    if not isinstance(header, dict):
        raise ProtocolError("safetensors header must be a JSON object")
    header.pop("__metadata__", None)
    if len(header) > MAX_TENSORS:
        raise ProtocolError(f"weights payload holds {len(header)} tensors, limit {MAX_TENSORS}")
    dtypes = _dtypes()
    specs: list[TensorSpec] = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ProtocolError(f"tensor {name!r}: header entry must have dtype, shape and data_offsets")
        dtype = dtypes.get(info["dtype"]) if isinstance(info["dtype"], str) else None
        shape, offsets = info["shape"], info["data_offsets"]
        if dtype is None:
            raise ProtocolError(f"tensor {name!r}: unsupported dtype {info['dtype']!r}")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise ProtocolError(f"tensor {name!r}: bad shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_len):
            raise ProtocolError(f"tensor {name!r}: data offsets {offsets!r} outside the {data_len}-byte buffer")
        count = int(np.prod(shape, dtype=np.int64))
        if offsets[1] - offsets[0] != count * dtype.itemsize:
            raise ProtocolError(f"tensor {name!r}: {offsets[1] - offsets[0]} bytes for shape {shape} {dtype}")
        specs.append(TensorSpec(name, dtype, tuple(shape), offsets[0], offsets[1]))
    ordered = sorted(specs, key=lambda spec: (spec.start, spec.end))
    for first, second in zip(ordered, ordered[1:]):
        if second.start < first.end:
            raise ProtocolError(f"tensors {first.name!r} and {second.name!r} overlap in the payload")
    return specs


def decode_weights(buffer: bytes | bytearray | memoryview, *, check_finite: bool = True,
                   writable: bool = False) -> dict[str, np.ndarray]:
    """Parse safetensors ``buffer`` into read-only views, validating the header, offsets and values.

    Raises ProtocolError naming the tensor for a bad dtype, shape, overlapping/out-of-range data, or (with
    ``check_finite``) a NaN/inf value. ``writable`` views (of a bytearray) let a model share the buffer.
    """
    view = memoryview(buffer).cast("B")
    if len(view) < 8:
        raise ProtocolError(f"weights payload of {len(view)} bytes is too short for safetensors")
    header_len = header_length(view, len(view))
    data = view[8 + header_len:]
    out: dict[str, np.ndarray] = {}
    for spec in parse_header(view[8:8 + header_len], len(data)):
        count = (spec.end - spec.start) // spec.dtype.itemsize
        array = np.frombuffer(data, dtype=spec.dtype, count=count, offset=spec.start).reshape(spec.shape)
        if not writable:
            array.flags.writeable = False
        if check_finite and array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ProtocolError(f"tensor {spec.name!r} holds non-finite values")
        out[spec.name] = array
    return out


def raw_parameter_bytes(weights: Mapping[str, np.ndarray]) -> int:
    """Bytes of the floating entries stored as float32: the yardstick of the wire-overhead bound."""
    return int(sum(a.size * 4 for a in weights.values() if a.dtype.kind == "f"))


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
