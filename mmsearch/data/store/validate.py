"""Checks run when a store is opened: shards against the manifest, metadata against expectations.

Every error names the store URI and, where it applies, the table, column and shard, and says
what was expected and what was found.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Literal, Mapping, Union

import numpy as np
import pyarrow.parquet as pq

from mmsearch import storage
from mmsearch.data.store.schema import ColumnSpec, ShardInfo, StoreError, StoreManifest, TableManifest, arrow_schema

Verify = Literal["none", "size", "footer"]
# What a caller may require of a column: its dim (int), mere presence (None), or any of the
# ColumnSpec fields (kind, dtype, dim, encoder) as a mapping.
ColumnExpectation = Union[int, None, Mapping[str, object]]
Expectation = Mapping[str, Mapping[str, ColumnExpectation]]

# Footer reads are latency-bound on S3, so they run on this many threads there. Local files are read
# on the calling thread: each extra thread gets its own glibc heap arena, and the freed metadata of
# thousands of footers stays resident in those arenas (measured: +64 MiB for the 16,000 row
# groups of bench_task_streaming's 16x store, +0 read on one thread, which takes 0.15 s there).
_FOOTER_THREADS = 8


def check_expectations(
    uri: str,
    manifest: StoreManifest,
    expect: Expectation | None,
    dataset: str | None = None,
    split: str | None = None,
) -> None:
    if dataset is not None and manifest.dataset != dataset:
        raise StoreError(f"{uri}: store holds data set {manifest.dataset!r}, expected {dataset!r}")
    if split is not None and manifest.split != split:
        raise StoreError(f"{uri}: store holds split {manifest.split!r}, expected {split!r}")
    if sum(manifest.num_rows.values()) == 0:
        raise StoreError(f"{uri}: store is empty (tables {list(manifest.tables)} hold no rows)")
    for table, columns in (expect or {}).items():
        if table not in manifest.tables:
            raise StoreError(f"{uri}: missing table {table!r} (store has {sorted(manifest.tables)})")
        held = manifest.tables[table]
        if held.num_rows == 0:
            raise StoreError(f"{uri}: table {table!r} is empty")
        for column, want in columns.items():
            if column not in held.columns:
                raise StoreError(
                    f"{uri}: table {table!r} has no column (modality) {column!r}; columns: {sorted(held.columns)}"
                )
            _check_column(uri, table, column, held.columns[column], want)


def _check_column(uri: str, table: str, column: str, spec: ColumnSpec, want: ColumnExpectation) -> None:
    if want is None:
        return
    fields = {"dim": want} if isinstance(want, int) else dict(want)
    for key, value in fields.items():
        if key not in ("kind", "dtype", "dim", "encoder"):
            raise StoreError(f"expectation for {table}.{column}: unknown key {key!r} (use kind, dtype, dim, encoder)")
        found = getattr(spec, key)
        if found != value:
            label = "dimension" if key == "dim" else key
            raise StoreError(f"{uri}: table {table!r}, column {column!r}: {label} is {found!r}, expected {value!r}")


def verify_shards(location: storage.StorageLocation, manifest: StoreManifest, level: Verify) -> None:
    """``size``: every listed shard exists with the committed byte size (one listing per table).
    ``footer``: additionally, each Parquet footer parses and matches the committed rows,
    row groups and schema."""
    if level == "none":
        return
    if level not in ("size", "footer"):
        raise StoreError(f"verify must be 'none', 'size' or 'footer', got {level!r}")
    jobs: list[tuple[str, TableManifest, ShardInfo]] = []
    for name, table in manifest.tables.items():
        sizes = storage.list_files(location.child(name))
        for shard in table.shards:
            found = sizes.get(shard.file.rsplit("/", 1)[-1])
            where = f"{location.uri}: table {name!r}, shard {shard.file}"
            if found is None:
                raise StoreError(f"{where}: file is missing")
            if found != shard.bytes:
                raise StoreError(f"{where}: file has {found} bytes, manifest says {shard.bytes} (truncated or rewritten)")
            jobs.append((name, table, shard))
    if level == "footer" and jobs:
        if not location.is_s3:
            for job in jobs:
                _check_footer(location, *job)
            return
        with ThreadPoolExecutor(min(_FOOTER_THREADS, len(jobs))) as pool:
            list(pool.map(lambda job: _check_footer(location, *job), jobs))


def _check_footer(location: storage.StorageLocation, name: str, table: TableManifest, shard: ShardInfo) -> None:
    where = f"{location.uri}: table {name!r}, shard {shard.file}"
    try:
        with location.filesystem().open_input_file(location.child(shard.file).fs_path) as handle:
            meta = pq.ParquetFile(handle).metadata
            schema = meta.schema.to_arrow_schema()
    except Exception as exc:  # noqa: BLE001 - any parse failure means a corrupted shard
        raise StoreError(f"{where}: unreadable Parquet ({type(exc).__name__}: {exc})") from exc
    if meta.num_rows != shard.rows:
        raise StoreError(f"{where}: file holds {meta.num_rows} rows, manifest says {shard.rows}")
    groups = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    if groups != shard.row_groups:
        raise StoreError(f"{where}: row groups {groups} differ from the manifest's {shard.row_groups}")
    if not schema.equals(arrow_schema(table.columns)):
        raise StoreError(f"{where}: file schema differs from the manifest's columns:\n{schema}")


def first_non_finite(values: np.ndarray) -> int | None:
    """Index of the first row holding NaN or inf, or None."""
    if values.size == 0:
        return None
    rows = values.reshape(len(values), -1) if values.ndim > 1 else values[:, None]
    bad = ~np.isfinite(rows).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else None
