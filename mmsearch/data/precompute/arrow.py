"""Stage batches <-> Arrow tables, for moving encoder outputs between processes (Ray Data blocks).

A stage batch is a dict of: 1-D numpy arrays (scalars), lists of str, 2-D float arrays
(vectors), lists of 1-D arrays (ragged lists, e.g. token ids) and lists of 2-D arrays (ragged
sequences, e.g. region features). :func:`to_arrow` lays them out with the latent store's own
column types (``mmsearch.data.store.schema``), so Arrow carries them natively (no pickling,
no tensor extension types); :func:`from_arrow` turns them back into the same dict.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from mmsearch.data.store import ColumnSpec, list_of, scalar, sequence, vector
from mmsearch.data.store.convert import to_record_batch
from mmsearch.data.store.schema import arrow_schema

Batch = dict[str, Any]


def infer_spec(name: str, values: Any) -> ColumnSpec:
    """The store column spec that holds ``values`` (see the module docstring)."""
    if isinstance(values, np.ndarray) and values.dtype != object:
        if values.ndim == 1:
            return scalar(values.dtype.name)
        if values.ndim == 2:
            return vector(values.shape[1], values.dtype.name)
        raise ValueError(f"column {name!r}: arrays must be 1-D or 2-D, got shape {values.shape}")
    items = list(values)
    if items and all(isinstance(v, str) for v in items):
        return scalar("string")
    arrays = [np.asarray(v) for v in items]
    if not arrays:
        raise ValueError(f"column {name!r}: cannot infer a type from an empty batch")
    first = arrays[0]
    if first.ndim == 1:
        return list_of(first.dtype.name)
    if first.ndim == 2:
        return sequence(first.shape[1], first.dtype.name)
    raise ValueError(f"column {name!r}: records must be 1-D or 2-D arrays, got shape {first.shape}")


def to_arrow(batch: Batch) -> pa.Table:
    specs = {name: infer_spec(name, values) for name, values in batch.items()}
    record_batch = to_record_batch("stage", specs, arrow_schema(specs), batch, check_finite=True)
    return pa.Table.from_batches([record_batch])


def _column(array: pa.Array) -> Any:
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return array.to_pylist()
    if pa.types.is_fixed_size_list(kind):
        flat = array.values.slice(array.offset * kind.list_size, len(array) * kind.list_size)
        return flat.to_numpy(zero_copy_only=False).reshape(len(array), kind.list_size)
    if pa.types.is_list(kind):
        offsets = array.offsets.to_numpy()
        child = array.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
        flat = _column(child)
        return np.split(flat, (offsets[1:-1] - offsets[0]).astype(np.int64))
    return array.to_numpy(zero_copy_only=False)


def from_arrow(table: pa.Table) -> Batch:
    """The stage batch a table made by :func:`to_arrow` holds (works on Ray's re-chunked blocks)."""
    return {name: _column(table.column(name).combine_chunks()) for name in table.column_names}


__all__ = ["from_arrow", "infer_spec", "to_arrow"]
