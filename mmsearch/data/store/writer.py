"""Write a latent store: bounded-memory Parquet shards, then the manifest as the commit point.

Crash safety, in order of events:
  * every shard of one write carries a fresh ``write_id`` in its name, so a new write never
    overwrites a file an older manifest lists;
  * local shards are written under a temporary name, fsynced and renamed; an S3 object only
    becomes visible once its upload completes;
  * the manifest is written last (local: temp + fsync + rename; S3: one PUT). Until then the
    old manifest, and every shard it lists, is untouched, so a failed rewrite leaves the old
    store readable. Shards of the replaced version are deleted only after the new manifest is in,
    and so are the leftovers of a write that was killed before it could clean up (local
    ``.part-*.parquet.tmp`` files, ``part-*`` objects no manifest lists): one writer per store
    at a time (the precompute build holds a lock on local roots).

Memory stays bounded by one row group per table plus the caller's batch: rows are buffered
until a row group is full, written, and dropped.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from mmsearch import storage
from mmsearch.data.store.convert import to_record_batch
from mmsearch.data.store.schema import (
    MANIFEST_NAME,
    ColumnSpec,
    ShardInfo,
    StoreError,
    StoreManifest,
    TableManifest,
    arrow_schema,
    check_column_names,
)

MiB = 2**20
# Row groups are the unit of shuffling and of Ray Data blocks: a few MiB keeps blocks well
# under a small object store and gives the shuffle many units; 8 groups per shard keeps the
# file count (and per-file listing/footer cost) low.
DEFAULT_ROW_GROUP_BYTES = 8 * MiB
DEFAULT_ROW_GROUPS_PER_SHARD = 8
# Shard files this writer names (final, and local in-progress): a killed write leaves these behind.
_SHARD_FILE = re.compile(r"^\.?part-[0-9a-f]+-\d{5}\.parquet(\.tmp)?$")


@dataclass
class _OpenShard:
    final: storage.StorageLocation
    written: storage.StorageLocation  # a hidden sibling of ``final`` locally, ``final`` itself on S3
    writer: pq.ParquetWriter
    rows: int = 0
    row_groups: list[int] = field(default_factory=list)


@dataclass
class _TableState:
    name: str
    columns: dict[str, ColumnSpec]
    schema: pa.Schema
    row_group_rows: int | None
    shard_rows: int | None
    pending: list[pa.RecordBatch] = field(default_factory=list)
    pending_rows: int = 0
    shard: _OpenShard | None = None
    shards: list[ShardInfo] = field(default_factory=list)


class StoreWriter:
    """Writes one data-set split as a latent store at ``uri`` (local path or ``s3://bucket/prefix``).

    Use as a context manager (commits on success, cleans up its own shards on error)::

        with StoreWriter("s3://bkt/scenes/train", dataset="scenes", split="train") as w:
            w.add_table("pairs", {"id": scalar("string"), "image": vector(1280), "text": vector(384)})
            for chunk in chunks:
                w.write_batch("pairs", {"id": ids, "image": img, "text": txt})

    ``row_group_rows`` / ``shard_rows`` fix the layout; by default a row group is about
    ``row_group_bytes`` of Arrow data (measured on the first batch) and a shard holds
    ``row_groups_per_shard`` row groups. ``overwrite=True`` replaces an existing store
    atomically at :meth:`commit`; without it an existing store is an error.
    """

    def __init__(
        self,
        uri: str | storage.StorageLocation,
        *,
        dataset: str,
        split: str,
        overwrite: bool = False,
        row_group_rows: int | None = None,
        shard_rows: int | None = None,
        row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES,
        row_groups_per_shard: int = DEFAULT_ROW_GROUPS_PER_SHARD,
        compression: str = "snappy",
        check_finite: bool = True,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        if not dataset or not split:
            raise StoreError("a store needs a non-empty dataset name and split")
        for name, value in (("row_group_rows", row_group_rows), ("shard_rows", shard_rows)):
            if value is not None and value < 1:
                raise StoreError(f"{name} must be >= 1, got {value}")
        if row_group_bytes < 1 or row_groups_per_shard < 1:
            raise StoreError("row_group_bytes and row_groups_per_shard must be >= 1")
        self.location = storage.resolve_storage(uri)
        self.dataset, self.split = dataset, split
        self.write_id = uuid.uuid4().hex[:12]
        self._row_group_rows, self._shard_rows = row_group_rows, shard_rows
        self._row_group_bytes, self._row_groups_per_shard = row_group_bytes, row_groups_per_shard
        self._compression, self._check_finite = compression, check_finite
        self._attrs = json.loads(json.dumps(dict(attrs or {})))  # must be JSON; copy
        self._tables: dict[str, _TableState] = {}
        self._written: list[storage.StorageLocation] = []  # every file this write created (for abort)
        self._done = False
        self.manifest: StoreManifest | None = None  # set by commit()
        storage.check_bucket(self.location)
        self._previous = self._existing_manifest(overwrite)

    # -- public API -----------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        return self.location.uri

    def add_table(self, name: str, columns: Mapping[str, ColumnSpec]) -> None:
        """Declare a table and its columns before writing rows to it."""
        self._check_open()
        if name in self._tables:
            raise StoreError(f"{self.uri}: table {name!r} is already declared")
        columns = dict(columns)
        check_column_names(name, columns)
        self._tables[name] = _TableState(name, columns, arrow_schema(columns), self._row_group_rows, self._shard_rows)

    def write_batch(self, table: str, data: Mapping[str, Any]) -> int:
        """Append rows to ``table``; returns the number of rows appended.

        ``data`` maps every declared column to its values: ``vector`` -> ``[n, dim]`` array;
        ``sequence`` -> list of ``[length_i, dim]`` arrays (or one dense ``[n, L, dim]`` array);
        ``list`` -> list of 1-D arrays; ``scalar`` -> 1-D array (strings: a list of ``str``).
        """
        self._check_open()
        state = self._table(table)
        batch = to_record_batch(table, state.columns, state.schema, data, self._check_finite)
        if batch.num_rows == 0:
            return 0
        if state.row_group_rows is None:
            state.row_group_rows = max(1, int(self._row_group_bytes * batch.num_rows // max(batch.nbytes, 1)))
        if state.shard_rows is None:
            state.shard_rows = state.row_group_rows * self._row_groups_per_shard
        state.pending.append(batch)
        state.pending_rows += batch.num_rows
        while state.pending_rows >= state.row_group_rows:
            self._write_row_group(state, state.row_group_rows)
        return batch.num_rows

    def commit(self) -> StoreManifest:
        """Flush every table, then publish the manifest. The store is visible from here on."""
        self._check_open()
        try:
            for state in self._tables.values():
                if state.pending_rows:
                    self._write_row_group(state, state.pending_rows)
                self._close_shard(state)
            manifest = StoreManifest(
                dataset=self.dataset,
                split=self.split,
                tables={n: TableManifest(s.columns, tuple(s.shards)) for n, s in self._tables.items()},
                write_id=self.write_id,
                attrs=self._attrs,
            )
            payload = (json.dumps(manifest.to_json(), indent=1) + "\n").encode()
            storage.write_bytes(self.location.child(MANIFEST_NAME), payload)
        except BaseException:
            self.abort()
            raise
        self._done = True
        self.manifest = manifest
        self._delete_stale(manifest)
        return manifest

    def abort(self) -> None:
        """Drop everything this write produced; an existing store stays as it was."""
        if self._done:
            return
        self._done = True
        for state in self._tables.values():
            if state.shard is not None:
                try:
                    state.shard.writer.close()
                except Exception:  # noqa: BLE001 - best effort while cleaning up
                    pass
                self._written.append(state.shard.written)
                state.shard = None
        storage.delete_files(self._written)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    # -- internals ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._done:
            raise StoreError(f"{self.uri}: this writer has already committed or aborted")

    def _table(self, name: str) -> _TableState:
        if name not in self._tables:
            raise StoreError(f"{self.uri}: table {name!r} was not declared (add_table first); declared: {list(self._tables)}")
        return self._tables[name]

    def _existing_manifest(self, overwrite: bool) -> StoreManifest | None:
        """The manifest being replaced (its shards are deleted after commit), if readable."""
        path = self.location.child(MANIFEST_NAME)
        if not storage.is_file(path):
            return None
        if not overwrite:
            raise StoreError(f"{self.location.uri}: a store already exists here (pass overwrite=True to replace it)")
        try:
            data = json.loads(storage.read_bytes(path))
            return StoreManifest.from_json(data, origin=path.uri)
        except (ValueError, KeyError):  # unreadable old manifest: replace it, leave its files alone
            return None

    def _write_row_group(self, state: _TableState, rows: int) -> None:
        table = pa.Table.from_batches(state.pending, schema=state.schema)
        head, rest = table.slice(0, rows), table.slice(rows)
        shard = state.shard or self._open_shard(state)
        shard.writer.write_table(head, row_group_size=rows)
        shard.rows += rows
        shard.row_groups.append(rows)
        state.pending = rest.to_batches() if rest.num_rows else []
        state.pending_rows = rest.num_rows
        if shard.rows >= (state.shard_rows or rows):
            self._close_shard(state)

    def _open_shard(self, state: _TableState) -> _OpenShard:
        name = f"part-{self.write_id}-{len(state.shards):05d}.parquet"
        final = self.location.child(state.name, name)
        # Local: write beside, rename when complete. S3: objects appear only once uploaded.
        written = final if self.location.is_s3 else self.location.child(state.name, f".{name}.tmp")
        if not self.location.is_s3:
            self.location.filesystem().create_dir(self.location.child(state.name).fs_path, recursive=True)
        self._written.append(written)
        scalar_columns = [n for n, c in state.columns.items() if c.kind == "scalar"]
        try:
            writer = pq.ParquetWriter(
                written.fs_path,
                state.schema,
                filesystem=self.location.filesystem(),
                compression=self._compression,
                use_dictionary=False,  # dictionary pages make float vectors ~3x slower to decode
                write_statistics=scalar_columns or False,
                write_page_checksum=True,  # a CRC per page: readers that verify find corrupted bytes
            )
        except OSError as exc:
            raise storage.StorageError(f"{final.uri}: cannot create shard ({exc})") from exc
        state.shard = _OpenShard(final, written, writer)
        return state.shard

    def _close_shard(self, state: _TableState) -> None:
        shard = state.shard
        if shard is None:
            return
        shard.writer.close()
        if shard.written != shard.final:
            storage.publish_local_file(shard.written.fs_path, shard.final.fs_path)
            self._written.append(shard.final)
        size = storage.file_info(shard.final).size
        relative = f"{state.name}/{shard.final.uri.rsplit('/', 1)[1]}"
        state.shards.append(ShardInfo(relative, shard.rows, int(size), tuple(shard.row_groups)))
        state.shard = None

    def _delete_stale(self, manifest: StoreManifest) -> None:
        """After the commit: the replaced version's shards, and shard files of killed writes."""
        keep = {s.file for t in manifest.tables.values() for s in t.shards}
        stale = {s.file for t in (self._previous.tables.values() if self._previous else ()) for s in t.shards}
        for table in set(manifest.tables) | set(self._previous.tables if self._previous else ()):
            try:
                found = storage.list_files(self.location.child(table))
            except storage.StorageError:
                continue  # best effort: the new store is committed either way
            stale.update(f"{table}/{name}" for name in found if _SHARD_FILE.match(name))
        storage.delete_files([self.location.child(f) for f in sorted(stale - keep)])
