"""Turn user-supplied columns (numpy arrays, lists of arrays, lists of strings) into Arrow arrays.

Every check that can fail names the table and column, so a precompute job that produced a
latent of the wrong width or a NaN fails at the write, not epochs later in training.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from mmsearch.data.store.schema import ColumnSpec, StoreError


def _where(table: str, column: str) -> str:
    return f"table {table!r}, column {column!r}"


def _check_finite(values: np.ndarray, spec: ColumnSpec, where: str) -> None:
    if spec.is_float and values.size and not np.isfinite(values).all():
        bad = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1) if values.ndim > 1 else values))
        raise StoreError(
            f"{where}: non-finite values (NaN or inf{', or beyond float16 range' if spec.dtype == 'float16' else ''}); "
            f"first at flat index {int(bad[0])}"
        )


def _cast(values: Any, spec: ColumnSpec, where: str, check_finite: bool) -> np.ndarray:
    try:
        array = np.asarray(values)
        if array.dtype == object:
            raise TypeError("ragged or mixed values")
        with np.errstate(over="ignore"):  # overflow to inf is reported below, by name
            cast = array.astype(spec.numpy_dtype, copy=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{where}: cannot convert values to {spec.dtype} ({exc})") from exc
    if spec.dtype.startswith("int") and array.dtype.kind == "f":
        raise StoreError(f"{where}: got floating-point values for an {spec.dtype} column")
    if check_finite:
        _check_finite(cast, spec, where)
    return np.ascontiguousarray(cast)


def _rows(values: Any, spec: ColumnSpec, where: str) -> list[np.ndarray]:
    """Split a variable-length column into one array per record."""
    if isinstance(values, np.ndarray) and values.dtype != object:
        want = 3 if spec.kind == "sequence" else 2
        if values.ndim != want:
            raise StoreError(f"{where}: a dense {spec.kind} batch must be {want}-D, got shape {values.shape}")
        return list(values)
    if not isinstance(values, (Sequence, np.ndarray)) or isinstance(values, (str, bytes)):
        raise StoreError(f"{where}: expected a list of per-record arrays, got {type(values).__name__}")
    return [np.asarray(v) for v in values]


def _offsets(lengths: Sequence[int]) -> pa.Array:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise StoreError("a batch holds more than 2^31 list elements; write smaller batches")
    return pa.array(offsets.astype(np.int32))


def to_arrow(table: str, column: str, spec: ColumnSpec, values: Any, check_finite: bool) -> pa.Array:
    """Arrow array for ``values`` laid out as ``spec`` (see ``schema.py`` for the layouts)."""
    where = _where(table, column)
    if spec.kind == "scalar":
        if spec.dtype == "string":
            items = list(values.tolist() if isinstance(values, np.ndarray) else values)
            if any(not isinstance(v, str) for v in items):
                raise StoreError(f"{where}: string columns take str values (no None)")
            return pa.array(items, type=pa.string())
        array = _cast(values, spec, where, check_finite)
        if array.ndim != 1:
            raise StoreError(f"{where}: scalar column must be 1-D, got shape {array.shape}")
        return pa.array(array)
    if spec.kind == "vector":
        array = _cast(values, spec, where, check_finite)
        if array.ndim != 2 or array.shape[1] != spec.dim:
            raise StoreError(f"{where}: expected shape [n, {spec.dim}], got {array.shape} (dimension mismatch)")
        return pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1)), type=spec.arrow_type())
    rows = _rows(values, spec, where)
    if spec.kind == "sequence":
        bad = next((r.shape for r in rows if r.ndim != 2 or r.shape[1] != spec.dim), None)
        if bad is not None:
            raise StoreError(f"{where}: each record must be [length, {spec.dim}], got {bad} (dimension mismatch)")
        flat = _cast(np.concatenate(rows) if rows else np.zeros((0, spec.dim)), spec, where, check_finite)
        row_type = spec.arrow_type().value_type
        inner = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), type=row_type)
        return pa.ListArray.from_arrays(_offsets([len(r) for r in rows]), inner, type=spec.arrow_type())
    bad = next((r.shape for r in rows if r.ndim != 1), None)
    if bad is not None:
        raise StoreError(f"{where}: each record of a list column must be 1-D, got {bad}")
    flat = _cast(np.concatenate(rows) if rows else np.zeros(0), spec, where, check_finite)
    return pa.ListArray.from_arrays(_offsets([len(r) for r in rows]), pa.array(flat), type=spec.arrow_type())


def to_record_batch(
    table: str, columns: Mapping[str, ColumnSpec], schema: pa.Schema, data: Mapping[str, Any], check_finite: bool
) -> pa.RecordBatch:
    missing = [c for c in columns if c not in data]
    extra = [c for c in data if c not in columns]
    if missing or extra:
        raise StoreError(
            f"table {table!r}: batch columns do not match the table "
            f"(missing: {missing or 'none'}; unknown: {extra or 'none'}; declared: {list(columns)})"
        )
    arrays = [to_arrow(table, name, spec, data[name], check_finite) for name, spec in columns.items()]
    lengths = {name: len(a) for name, a in zip(columns, arrays)}
    if len(set(lengths.values())) > 1:
        raise StoreError(f"table {table!r}: columns have different row counts {lengths}")
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
