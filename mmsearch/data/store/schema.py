"""What a latent store holds: column specs, their Arrow types, and the JSON manifest.

A store is a directory (or S3 prefix) with one data-set split. It holds named tables
(``pairs``, ``regions``, ``vqa``, ...), each a set of Parquet shards under ``<table>/``, and
the manifest ``_mmsearch_store.json``, written last: a store exists exactly when its
manifest does, and readers only touch the shards the manifest lists.

Column kinds (``ColumnSpec.kind``) and their Parquet/Arrow layout:

* ``vector``   -- one ``dim``-d float row per record: ``fixed_size_list<float16|float32>[dim]``.
* ``sequence`` -- a variable number of ``dim``-d float rows per record (region features
  ``[N, 1280]``, per-token states ``[T, 384]``, boxes ``[N, 4]``):
  ``list<fixed_size_list<float16|float32>[dim]>``.
* ``list``     -- a variable-length list of scalars (token ids, answer indices and scores):
  ``list<int32|int64|float32>``.
* ``scalar``   -- one value per record: ``int32|int64|float32|float64|bool|string`` (ids).

All fields are non-nullable: a missing value is an error at write time, not a silent NaN.
Vectors use plain fixed-size lists rather than raw bytes so that every Arrow consumer (Ray
Data's ``iter_torch_batches``, pandas, DuckDB) reads them as arrays; with Parquet dictionary
encoding off they decode at ~100k (float16) to ~150k (float32) pairs of 1280+384-d rows per
second on one core here, far above what training consumes (see ``bench/``).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

import numpy as np
import pyarrow as pa

FORMAT_NAME = "mmsearch.latent_store"
FORMAT_VERSION = 1
MANIFEST_NAME = "_mmsearch_store.json"

Kind = Literal["vector", "sequence", "list", "scalar"]
KINDS: tuple[str, ...] = ("vector", "sequence", "list", "scalar")

_FLOAT_DTYPES = ("float16", "float32")
_ALLOWED_DTYPES: dict[str, tuple[str, ...]] = {
    "vector": _FLOAT_DTYPES,
    "sequence": _FLOAT_DTYPES,
    "list": ("int32", "int64", "float16", "float32"),
    "scalar": ("int32", "int64", "float32", "float64", "bool", "string"),
}
_ARROW_SCALAR: dict[str, pa.DataType] = {
    "float16": pa.float16(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "bool": pa.bool_(),
    "string": pa.string(),
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Batch keys derived from variable-length columns (see decode.py); a column may not shadow them.
DERIVED_SUFFIXES = ("_mask", "_lengths")


class StoreError(ValueError):
    """A store is missing, incomplete, corrupted, or does not match what the caller expects."""


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a store table.

    ``dim`` is the row width of ``vector`` / ``sequence`` columns (e.g. 1280 for an
    EfficientNet-Lite0 latent, 4 for boxes). ``encoder`` names the frozen encoder that produced a
    latent column (free text, e.g. ``"efficientnet_lite0"``), ``None`` for raw data.
    """

    kind: Kind
    dtype: str
    dim: int | None = None
    encoder: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise StoreError(f"unknown column kind {self.kind!r}; known kinds: {', '.join(KINDS)}")
        allowed = _ALLOWED_DTYPES[self.kind]
        if self.dtype not in allowed:
            raise StoreError(f"{self.kind} columns take dtype in {allowed}, got {self.dtype!r}")
        has_rows = self.kind in ("vector", "sequence")
        if has_rows and (not isinstance(self.dim, int) or self.dim < 1):
            raise StoreError(f"{self.kind} columns need a positive integer dim, got {self.dim!r}")
        if not has_rows and self.dim is not None:
            raise StoreError(f"{self.kind} columns take no dim (got {self.dim})")

    @property
    def is_float(self) -> bool:
        return self.dtype.startswith("float")

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(object) if self.dtype == "string" else np.dtype(self.dtype)

    def arrow_type(self) -> pa.DataType:
        base = _ARROW_SCALAR[self.dtype]
        if self.kind == "scalar":
            return base
        if self.kind == "list":
            return pa.list_(pa.field("item", base, nullable=False))
        row = pa.list_(pa.field("item", base, nullable=False), self.dim)
        if self.kind == "vector":
            return row
        return pa.list_(pa.field("item", row, nullable=False))

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ColumnSpec":
        return cls(**dict(data))


def vector(dim: int, dtype: str = "float16", encoder: str | None = None) -> ColumnSpec:
    return ColumnSpec("vector", dtype, dim, encoder)


def sequence(dim: int, dtype: str = "float16", encoder: str | None = None) -> ColumnSpec:
    return ColumnSpec("sequence", dtype, dim, encoder)


def list_of(dtype: str) -> ColumnSpec:
    return ColumnSpec("list", dtype)


def scalar(dtype: str) -> ColumnSpec:
    return ColumnSpec("scalar", dtype)


def check_column_names(table: str, columns: Mapping[str, ColumnSpec]) -> None:
    if not _NAME.match(table):
        raise StoreError(f"table name {table!r} must be an identifier (letters, digits, _)")
    if not columns:
        raise StoreError(f"table {table!r} needs at least one column")
    for name, spec in columns.items():
        if not _NAME.match(name):
            raise StoreError(f"table {table!r}: column name {name!r} must be an identifier")
        if not isinstance(spec, ColumnSpec):
            raise StoreError(f"table {table!r}: column {name!r} must be a ColumnSpec, got {type(spec).__name__}")
    variable = [n for n, s in columns.items() if s.kind in ("sequence", "list")]
    for name in columns:
        for base in variable:
            if name in (base + suffix for suffix in DERIVED_SUFFIXES):
                raise StoreError(f"table {table!r}: column {name!r} clashes with the batch key derived from {base!r}")


def arrow_schema(columns: Mapping[str, ColumnSpec]) -> pa.Schema:
    return pa.schema([pa.field(name, spec.arrow_type(), nullable=False) for name, spec in columns.items()])


@dataclass(frozen=True)
class ShardInfo:
    """One Parquet file of a table, as committed: readers check it against the file itself."""

    file: str  # path relative to the store root, e.g. "pairs/part-1a2b3c4d5e6f-00000.parquet"
    rows: int
    bytes: int
    row_groups: tuple[int, ...]  # rows per Parquet row group, in file order

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "rows": self.rows, "bytes": self.bytes, "row_groups": list(self.row_groups)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ShardInfo":
        return cls(str(data["file"]), int(data["rows"]), int(data["bytes"]), tuple(int(r) for r in data["row_groups"]))


@dataclass(frozen=True)
class TableManifest:
    columns: dict[str, ColumnSpec]
    shards: tuple[ShardInfo, ...]

    @property
    def num_rows(self) -> int:
        return sum(s.rows for s in self.shards)

    def to_json(self) -> dict[str, Any]:
        return {
            "num_rows": self.num_rows,
            "columns": {n: c.to_json() for n, c in self.columns.items()},
            "shards": [s.to_json() for s in self.shards],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TableManifest":
        columns = {str(n): ColumnSpec.from_json(c) for n, c in data["columns"].items()}
        return cls(columns, tuple(ShardInfo.from_json(s) for s in data["shards"]))


@dataclass(frozen=True)
class StoreManifest:
    """The commit record of a store: data set, split, tables and their shards."""

    dataset: str
    split: str
    tables: dict[str, TableManifest]
    write_id: str  # unique per write; part of every shard name
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    attrs: dict[str, Any] = field(default_factory=dict)  # free-form JSON (encoder settings, source, ...)
    format_version: int = FORMAT_VERSION

    @property
    def num_rows(self) -> dict[str, int]:
        return {name: t.num_rows for name, t in self.tables.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "dataset": self.dataset,
            "split": self.split,
            "created": self.created,
            "write_id": self.write_id,
            "num_rows": self.num_rows,
            "attrs": self.attrs,
            "tables": {n: t.to_json() for n, t in self.tables.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], origin: str) -> "StoreManifest":
        if data.get("format") != FORMAT_NAME:
            raise StoreError(f"{origin}: not an mmsearch latent store manifest (format={data.get('format')!r})")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise StoreError(f"{origin}: store format version {version!r} is not supported (this code reads {FORMAT_VERSION})")
        try:
            return cls(
                dataset=str(data["dataset"]),
                split=str(data["split"]),
                tables={str(n): TableManifest.from_json(t) for n, t in data["tables"].items()},
                write_id=str(data["write_id"]),
                created=str(data["created"]),
                attrs=dict(data.get("attrs") or {}),
                format_version=int(version),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{origin}: malformed manifest ({type(exc).__name__}: {exc})") from exc
