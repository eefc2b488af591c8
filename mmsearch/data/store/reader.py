"""Open a latent store: read the manifest, check shards and expectations, read rows without Ray.

``open_store`` is the only way in; it fails before any training starts when the store is
missing, incomplete (no manifest), corrupted (shard missing, truncated, unreadable, or not
what the manifest says), empty, or not what the caller expects (table, column, dimension,
dtype, encoder, data set, split), or -- with ``check_nan=True`` -- holds NaN / inf values.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mmsearch import storage
from mmsearch.data.store import shuffle
from mmsearch.data.store.decode import decode_columns, decode_numpy
from mmsearch.data.store.plan import Piece, plan_epoch
from mmsearch.data.store.prefetch import ahead
from mmsearch.data.store.schema import MANIFEST_NAME, ColumnSpec, StoreError, StoreManifest, TableManifest
from mmsearch.data.store.validate import Expectation, Verify, check_expectations, first_non_finite, verify_shards

DEFAULT_WINDOW_ROW_GROUPS = 8  # rows are mixed within this many row groups (~64 MiB by default)
_PREFETCH = 2  # row groups read ahead in a background thread (Parquet decoding releases the GIL)


@dataclass(frozen=True)
class StoreTable:
    """One table of an opened store: its columns, shards, and plain-pyarrow readers."""

    name: str
    location: storage.StorageLocation
    manifest: TableManifest

    @property
    def uri(self) -> str:
        return self.location.uri

    @property
    def filesystem(self) -> pafs.FileSystem:
        return self.location.filesystem()

    @property
    def num_rows(self) -> int:
        return self.manifest.num_rows

    @property
    def columns(self) -> dict[str, ColumnSpec]:
        return dict(self.manifest.columns)

    def shard_paths(self) -> list[str]:
        """Shard paths inside :attr:`filesystem` (what ``pyarrow`` / ``ray.data.read_parquet`` take)."""
        return [self.location.child(s.file).fs_path for s in self.manifest.shards]

    def shard_uris(self) -> list[str]:
        return [self.location.child(s.file).uri for s in self.manifest.shards]

    def select(self, columns: Sequence[str] | None) -> dict[str, ColumnSpec]:
        """Specs of ``columns`` (all when None), failing clearly on unknown names."""
        if columns is None:
            return self.columns
        unknown = [c for c in columns if c not in self.manifest.columns]
        if unknown:
            raise StoreError(f"{self.uri}: table {self.name!r} has no column(s) {unknown}; columns: {list(self.manifest.columns)}")
        return {c: self.manifest.columns[c] for c in columns}

    # -- reading --------------------------------------------------------------------------------

    def read_pieces(self, pieces: Sequence[Piece], columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
        """Arrow tables for ``pieces`` in order, reading ahead in a background thread."""
        names = list(self.select(columns))
        files: dict[int, pq.ParquetFile] = {}

        def read(piece: Piece) -> pa.Table:
            shard = self.manifest.shards[piece.shard]
            try:
                if piece.shard not in files:
                    handle = self.filesystem.open_input_file(self.location.child(shard.file).fs_path)
                    files[piece.shard] = pq.ParquetFile(handle, pre_buffer=True, page_checksum_verification=True)
                table = files[piece.shard].read_row_group(piece.group, columns=names)
            except Exception as exc:  # noqa: BLE001 - name the shard in whatever went wrong
                raise StoreError(f"{self.uri}: table {self.name!r}, shard {shard.file}: read failed ({exc})") from exc
            return table.slice(piece.start, piece.rows)

        try:  # one reader thread: the files dict is only touched there
            yield from ahead(read, pieces, depth=_PREFETCH)
        finally:
            for handle in files.values():
                handle.close()

    def iter_arrow(
        self,
        batch_size: int,
        columns: Sequence[str] | None = None,
        *,
        shuffle_seed: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        equal: bool = True,
        window_row_groups: int = DEFAULT_WINDOW_ROW_GROUPS,
        drop_last: bool = False,
    ) -> Iterator[pa.Table]:
        """Arrow batches of ``batch_size`` rows; shuffled (row-group order + window) if ``shuffle_seed``."""
        pieces = plan_epoch(self.manifest.shards, seed=shuffle_seed, rank=rank, world_size=world_size, equal=equal)
        groups = [g for s in self.manifest.shards for g in s.row_groups]
        window_rows = max(1, window_row_groups) * (int(np.mean(groups)) if groups else 1)
        # A stream independent of the row-group permutation's (plan_epoch draws from [seed, 0]).
        rng = np.random.default_rng([shuffle_seed, 1]) if shuffle_seed is not None else None
        return shuffle.batches(self.read_pieces(pieces, columns), batch_size, window_rows=window_rows, rng=rng, drop_last=drop_last)

    def iter_batches(
        self,
        batch_size: int,
        columns: Sequence[str] | None = None,
        shuffle_seed: int | None = None,
        *,
        float_dtype: Any = np.float32,
        drop_last: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Batches as dicts of numpy arrays (format: ``mmsearch.data.store.decode``)."""
        specs = self.select(columns)
        for table in self.iter_arrow(batch_size, list(specs), shuffle_seed=shuffle_seed, drop_last=drop_last):
            yield decode_numpy(table, specs, float_dtype)

    def read_arrow(self, columns: Sequence[str] | None = None) -> pa.Table:
        names = list(self.select(columns))
        tables = list(self.read_pieces(plan_epoch(self.manifest.shards, seed=None), names))
        if not tables:
            return self.empty_arrow(names)
        return pa.concat_tables(tables)

    def empty_arrow(self, columns: Sequence[str]) -> pa.Table:
        specs = self.select(columns)
        return pa.table({n: pa.array([], type=s.arrow_type()) for n, s in specs.items()})

    def read_all(self, columns: Sequence[str] | None = None, *, float_dtype: Any = np.float32) -> dict[str, Any]:
        """The whole table as one batch dict (for small tables: evaluation splits, tests)."""
        specs = self.select(columns)
        return decode_numpy(self.read_arrow(list(specs)), specs, float_dtype)

    def check_finite(self, columns: Sequence[str] | None = None) -> None:
        """Scan float columns; raise naming the shard, column and row of the first NaN / inf."""
        specs = {n: s for n, s in self.select(columns).items() if s.is_float}
        if not specs:
            return
        pieces = plan_epoch(self.manifest.shards, seed=None)
        for piece, table in zip(pieces, self.read_pieces(pieces, list(specs))):
            decoded = decode_columns(table, specs)
            for name in specs:
                row = first_non_finite(decoded[name])  # padding is zeros, so finite
                if row is not None:
                    shard = self.manifest.shards[piece.shard]
                    before = sum(shard.row_groups[: piece.group]) + piece.start
                    raise StoreError(
                        f"{self.uri}: table {self.name!r}, column {name!r}, shard {shard.file}: "
                        f"NaN or inf at row {before + row} of the shard"
                    )


@dataclass(frozen=True)
class Store:
    """An opened, verified latent store (one data-set split)."""

    location: storage.StorageLocation
    meta: StoreManifest

    @property
    def uri(self) -> str:
        return self.location.uri

    @property
    def filesystem(self) -> pafs.FileSystem:
        return self.location.filesystem()

    @property
    def tables(self) -> list[str]:
        return list(self.meta.tables)

    def table(self, name: str) -> StoreTable:
        if name not in self.meta.tables:
            raise StoreError(f"{self.uri}: missing table {name!r} (store has {sorted(self.meta.tables)})")
        return StoreTable(name, self.location, self.meta.tables[name])


def read_manifest(location: storage.StorageLocation) -> StoreManifest:
    manifest = location.child(MANIFEST_NAME)
    if not storage.is_file(manifest):
        storage.check_bucket(location)
        stray = _stray_shards(location)
        hint = (
            f"; {len(stray)} shard file(s) without a manifest -- an incomplete write (manifests are written last)"
            if stray
            else ""
        )
        raise StoreError(f"{location.uri}: no latent store here ({MANIFEST_NAME} not found){hint}")
    raw = storage.read_bytes(manifest)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StoreError(f"{manifest.uri}: manifest is not valid JSON ({exc})") from exc
    return StoreManifest.from_json(data, origin=manifest.uri)


def _stray_shards(location: storage.StorageLocation) -> list[str]:
    """Parquet files one level below the root (table directories), for a helpful error."""
    try:
        top = location.filesystem().get_file_info(pafs.FileSelector(location.fs_path, allow_not_found=True))
        found: list[str] = []
        for info in top:
            if info.type == pafs.FileType.Directory:
                found += storage.list_files(location.child(info.base_name))
    except OSError:
        return []
    return [p for p in found if p.endswith((".parquet", ".parquet.tmp"))]


def open_store(
    uri: str | storage.StorageLocation,
    expect: Expectation | None = None,
    *,
    check_nan: bool = False,
    verify: Verify = "footer",
    dataset: str | None = None,
    split: str | None = None,
) -> Store:
    """Open and check the store at ``uri`` (local path, ``file://``, ``s3://bucket/prefix``, or a
    :class:`~mmsearch.storage.StorageLocation`, e.g. one with a custom S3 endpoint).

    ``expect`` maps table -> column -> requirement: an int is the required dimension, ``None``
    just requires the column, a mapping may pin ``kind`` / ``dtype`` / ``dim`` / ``encoder``;
    e.g. ``{"pairs": {"image": 1280, "text": 384}}``. ``verify``: ``"footer"`` (default) checks
    each shard's size, rows, row groups and schema against the manifest; ``"size"`` only sizes;
    ``"none"`` skips shard checks. ``check_nan`` scans every float column (reads the whole store).
    """
    location = storage.resolve_storage(uri)
    manifest = read_manifest(location)
    check_expectations(location.uri, manifest, expect, dataset=dataset, split=split)
    verify_shards(location, manifest, verify)
    store = Store(location, manifest)
    if check_nan:
        for name in store.tables:
            store.table(name).check_finite()
    return store
