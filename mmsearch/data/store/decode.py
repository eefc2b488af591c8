"""Arrow record batches of a store table -> the batch dict every stream yields.

Batch dict format (same for the plain-pyarrow stream and the Ray Data stream):

===================  ==========================================================================
column kind          keys and values (``B`` rows, ``L`` = longest record in this batch)
===================  ==========================================================================
``vector``           ``name``: float ``[B, dim]``
``sequence``         ``name``: float ``[B, L, dim]``, zero-padded;
                     ``name_mask``: bool ``[B, L]``, **True at padding** (the project convention);
                     ``name_lengths``: int64 ``[B]``
``list``             ``name``: ``[B, L]`` (int64 for integer lists, float otherwise), zero-padded
                     (0 is also PAD for token ids); ``name_mask`` and ``name_lengths`` as above
``scalar`` numeric   ``name``: ``[B]`` (int64 / float / bool)
``scalar`` string    ``name``: ``list[str]`` of length ``B``
===================  ==========================================================================

Floats come out as float32 by default (CPU paths stay fp32); pass ``float_dtype=None`` to keep
the stored dtype (e.g. float16, to halve host-to-GPU traffic and cast on the device).
:func:`decode_numpy` yields numpy arrays, :func:`decode_torch` torch tensors.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import torch

from mmsearch.data.store.schema import ColumnSpec

Batch = dict[str, Any]


def _array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def _values(array: pa.Array) -> np.ndarray:
    """Flat numpy view of a primitive array's valid range (zero-copy; no nulls by contract)."""
    return array.to_numpy(zero_copy_only=array.type != pa.bool_())


def _list_parts(array: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(lengths, flat child values of this slice) of a list array."""
    offsets = array.offsets.to_numpy()
    child = array.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    return np.diff(offsets).astype(np.int64), child


def _fixed_rows(array: pa.Array, dim: int) -> np.ndarray:
    """``[n, dim]`` view of a fixed_size_list array (handles slices)."""
    flat = array.values.slice(array.offset * dim, len(array) * dim)
    return _values(flat).reshape(len(array), dim)


def _pad(lengths: np.ndarray, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scatter ragged rows ``flat`` ([sum(lengths), ...]) into a zero-padded [B, L, ...] array."""
    longest = int(lengths.max()) if lengths.size else 0
    valid = np.arange(longest)[None, :] < lengths[:, None]
    padded = np.zeros((len(lengths), longest, *flat.shape[1:]), dtype=flat.dtype)
    padded[valid] = flat
    return padded, ~valid


def decode_columns(batch: pa.RecordBatch | pa.Table, columns: Mapping[str, ColumnSpec]) -> Batch:
    """Decode ``columns`` of ``batch`` into numpy arrays in their stored dtypes."""
    out: Batch = {}
    for name, spec in columns.items():
        array = _array(batch.column(name))
        if spec.kind == "vector":
            out[name] = _fixed_rows(array, spec.dim)
        elif spec.kind == "scalar":
            out[name] = array.to_pylist() if spec.dtype == "string" else _values(array)
        else:
            lengths, child = _list_parts(array)
            flat = _fixed_rows(child, spec.dim) if spec.kind == "sequence" else _values(child)
            if spec.kind == "list" and spec.dtype.startswith("int"):
                flat = flat.astype(np.int64, copy=False)
            out[name], out[f"{name}_mask"] = _pad(lengths, flat)
            out[f"{name}_lengths"] = lengths
    return out


def _float_keys(columns: Mapping[str, ColumnSpec]) -> list[str]:
    return [n for n, s in columns.items() if s.is_float]


def _tensor(value: np.ndarray) -> torch.Tensor:
    # Zero-copy Arrow views are read-only; torch tensors must own writable memory.
    return torch.from_numpy(value if value.flags.writeable else value.copy())


def decode_torch(
    batch: pa.RecordBatch | pa.Table, columns: Mapping[str, ColumnSpec], float_dtype: torch.dtype | None = torch.float32
) -> Batch:
    """The batch dict with torch tensors (strings stay ``list[str]``)."""
    out = {k: _tensor(v) if isinstance(v, np.ndarray) else v for k, v in decode_columns(batch, columns).items()}
    if float_dtype is not None:
        for key in _float_keys(columns):
            out[key] = out[key].to(float_dtype)  # torch's half->float is ~3x faster than numpy's here
    return out


def decode_numpy(
    batch: pa.RecordBatch | pa.Table, columns: Mapping[str, ColumnSpec], float_dtype: np.dtype | None = np.float32
) -> Batch:
    """The batch dict with numpy arrays (strings stay ``list[str]``)."""
    out = decode_columns(batch, columns)
    if float_dtype is not None:
        target = torch.from_numpy(np.zeros(0, dtype=float_dtype)).dtype
        for key in _float_keys(columns):
            if out[key].dtype != float_dtype:
                out[key] = _tensor(out[key]).to(target).numpy()
    return out
