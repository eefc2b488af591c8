"""Rows of a store table read on demand: the large columns of a streamed data set, per batch.

``StoreTaskData`` with ``regions: stream`` holds only where each row of a large column lives --
its Parquet row group across the table and its row within the group, from the manifest's
row-group sizes (nothing read) -- and, for each batch, reads the row groups holding the batch's
rows (only the streamed columns), takes those rows and returns them as batch-local
:class:`~mmsearch.data.collate.Ragged` columns. Streamed so: the ``regions`` table's ``features``
/ ``boxes`` (:mod:`mmsearch.data.region_rows`), and with ``text_input: states`` the sample
table's per-token ``states`` (and ITM's hard negatives' ``states``).

:class:`RowPlan` is where a batch's distinct rows are (what a reader elsewhere, a Ray Data task,
needs); :class:`TableRowReader` reads a plan's rows and pickles as the table (no open files, no
credentials); :class:`StreamedRows` plans, reads through a bounded least-recently-used cache of
decoded row groups (:class:`RowGroupCache`, one budget a data set's streamed tables share), and
assembles. A whole row group is decoded for any row of it.

Errors: a shard that cannot be opened or read (truncated, corrupted: pages carry CRCs; gone)
raises ``StoreError`` naming the store, the table and the shard file.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmsearch.data.collate import Ragged
from mmsearch.data.store import StoreError, StoreTable
from mmsearch.storage import pinned_endpoint

_OPEN_FILES = 32  # Parquet files kept open (footers parsed) at a time; least recently used closed
# Above this, a streamed sample table's row group makes a batch in random order read far more than
# it uses, one group per sample (a question's states: ~8 KB; the precompute default: 8 MiB groups).
DENSE_GROUP_BYTES = 2**20
LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class RowPlan:
    """The distinct rows of a batch: ``rows`` (table rows, ascending), where each is stored
    (``groups``: row group across the table, ``offsets``: row within it) and ``local`` (for each
    entry the batch asked for, which of ``rows`` it is)."""

    rows: np.ndarray
    local: np.ndarray
    groups: np.ndarray
    offsets: np.ndarray


class TableRowReader:
    """Reads ``columns`` of a store table's rows by (row group, row) (no cache).

    Pickles as the table, the columns and the row-group list (open files are not sent), so a Ray
    Data task can read the rows a :class:`RowPlan` names: :meth:`read_rows`.
    """

    def __init__(self, table: StoreTable, columns: tuple[str, ...]) -> None:
        # The endpoint this process reads the table from travels with it (not the credentials:
        # each process takes its own from the standard chain), so a task elsewhere reads the same server.
        self.table = dataclasses.replace(table, location=pinned_endpoint(table.location))
        self.columns = tuple(columns)
        self.groups = [(s, g) for s, shard in enumerate(table.manifest.shards) for g in range(len(shard.row_groups))]
        self._files: OrderedDict[int, pq.ParquetFile] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {"table": self.table, "columns": self.columns, "groups": self.groups}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.table, self.columns, self.groups = state["table"], state["columns"], state["groups"]
        self._files = OrderedDict()

    def read_rows(self, groups: np.ndarray, offsets: np.ndarray,
                  read_group: Callable[[int], pa.Table] | None = None) -> pa.Table:
        """Rows ``offsets[i]`` of row groups ``groups[i]``, in that order; ``groups`` ascending (a
        plan's rows are in storage order, so each group's rows form one run). ``read_group``:
        where whole row groups come from (default: :meth:`read_group`; a stream: its cache)."""
        groups, offsets = np.asarray(groups, dtype=np.int64), np.asarray(offsets, dtype=np.int64)
        if len(groups) > 1 and np.any(np.diff(groups) < 0):
            raise ValueError("read_rows needs the row groups in ascending order (a RowPlan's order)")
        read_group = read_group or self.read_group
        runs_of, starts = np.unique(groups, return_index=True)
        parts = [read_group(int(g)).take(pa.array(run)) for g, run in zip(runs_of, np.split(offsets, starts[1:]))]
        return pa.concat_tables(parts) if parts else self.table.empty_arrow(list(self.columns))

    def read_group(self, group: int) -> pa.Table:
        shard_index, row_group = self.groups[group]
        shard = self.table.manifest.shards[shard_index]
        try:
            return self._file(shard_index).read_row_group(row_group, columns=list(self.columns))
        except Exception as exc:  # noqa: BLE001 - name the shard in whatever went wrong
            self._close(shard_index)
            raise StoreError(f"{self.table.uri}: table {self.table.name!r}, shard {shard.file}: "
                             f"reading row group {row_group} failed ({type(exc).__name__}: {exc})") from exc

    def _file(self, shard_index: int) -> pq.ParquetFile:
        handle = self._files.get(shard_index)
        if handle is not None:
            self._files.move_to_end(shard_index)
            return handle
        path = self.table.location.child(self.table.manifest.shards[shard_index].file).fs_path
        handle = pq.ParquetFile(self.table.filesystem.open_input_file(path), pre_buffer=True, page_checksum_verification=True)
        self._files[shard_index] = handle
        while len(self._files) > _OPEN_FILES:
            _, old = self._files.popitem(last=False)
            old.close()
        return handle

    def _close(self, shard_index: int) -> None:
        handle = self._files.pop(shard_index, None)
        if handle is not None:
            handle.close()

    def close(self) -> None:
        for shard_index in list(self._files):
            self._close(shard_index)


class RowGroupCache:
    """Decoded row groups kept for reuse, the least recently used dropped past ``max_bytes``: one
    budget for every streamed table that shares it (a data set's regions, states and negatives, of
    every split), so what it holds does not grow with the number of tables, nor with the store
    (two caches of 64 MiB each held 49 MiB more at 16x than at 1x, where one table could not fill
    its own; bench/README.md, issue 11). ``lock`` serialises the readers that share it."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"a row-group cache holds >= 0 bytes, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.nbytes = 0  # decoded bytes held
        self.lock = threading.Lock()
        self._groups: OrderedDict[tuple, pa.Table] = OrderedDict()

    def __len__(self) -> int:
        return len(self._groups)

    def get(self, key: tuple) -> pa.Table | None:
        table = self._groups.get(key)
        if table is not None:
            self._groups.move_to_end(key)
        return table

    def put(self, key: tuple, table: pa.Table) -> None:
        if table.nbytes > self.max_bytes or key in self._groups:
            return
        self._groups[key] = table
        self.nbytes += table.nbytes
        while self.nbytes > self.max_bytes:
            _, dropped = self._groups.popitem(last=False)
            self.nbytes -= dropped.nbytes


class StreamedRows:
    """``columns`` of a store table read per batch (see the module docstring) through ``cache``: a
    :class:`RowGroupCache` shared with other tables, or the bytes of one of its own (a row group
    stays readable while a batch is assembled even with a cache of 0). ``per_sample``: a table of
    one row per sample (states), which warns when its row groups are large."""

    def __init__(self, table: StoreTable, columns: tuple[str, ...], cache: RowGroupCache | int, *, per_sample: bool = False) -> None:
        self.cache = cache if isinstance(cache, RowGroupCache) else RowGroupCache(cache)
        self.table, self.columns = table, tuple(columns)
        self._key = (table.uri, table.name, self.columns)  # this table's entries in a shared cache
        self.reader = TableRowReader(table, self.columns)
        counts = np.asarray([n for shard in table.manifest.shards for n in shard.row_groups], dtype=np.int64)
        self.num_groups = len(counts)
        # table row -> (row group across the table, row within the group)
        self.row_group = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.row_offset = np.arange(int(counts.sum()), dtype=np.int64) - starts[self.row_group]
        if per_sample and self.group_bytes > DENSE_GROUP_BYTES:  # a sample table: one row per sample of a batch
            LOG.warning("%s: table %r holds %.1f MiB per row group; its %s streamed in random order, each batch reads about "
                        "one row group per sample. For data.regions: stream write the store with small row groups "
                        "(precompute layout.row_group_kib=128 layout.row_groups_per_shard=64).",
                        table.uri, table.name, self.group_bytes / 2**20, "/".join(self.columns))
        self.reads = 0  # row groups read from storage (cache misses), for tests and the benchmark
        self.bytes_read = 0  # decoded bytes of those row groups
        self.bytes_served = 0  # decoded bytes of the rows the batches took from them

    def __len__(self) -> int:
        return len(self.row_group)

    @property
    def group_bytes(self) -> float:
        """Mean stored bytes of a row group (what a batch reads for any one of its rows)."""
        shards = self.table.manifest.shards
        return sum(s.bytes for s in shards) / max(1, self.num_groups)

    def plan(self, rows: np.ndarray) -> RowPlan:
        """Where the distinct rows of ``rows`` are stored (in storage order), and which of them
        each entry of ``rows`` is."""
        unique, local = np.unique(np.asarray(rows, dtype=np.int64), return_inverse=True)
        if len(unique) and (unique[0] < 0 or unique[-1] >= len(self.row_group)):
            raise IndexError(f"{self.table.uri}: table {self.table.name!r} has {len(self.row_group)} rows; asked for row {unique[-1]}")
        return RowPlan(unique, local.reshape(-1), self.row_group[unique], self.row_offset[unique])

    def read(self, plan: RowPlan) -> pa.Table:
        """The streamed columns of ``plan``'s rows, read here (through the cache)."""
        with self.cache.lock:  # batches are assembled in prefetch threads (see ahead()), the cache shared
            rows = self.reader.read_rows(plan.groups, plan.offsets, self._group)
            self.bytes_served += rows.nbytes
        return rows

    def assemble(self, plan: RowPlan, rows: pa.Table) -> dict[str, Ragged]:
        """Each streamed column of ``plan``'s distinct rows (one per row, the plan's order) as a
        batch-local ``Ragged``: record ``plan.local[i]`` is entry ``i``'s."""
        if rows.num_rows != len(plan.rows):
            raise StoreError(f"{self.table.uri}: table {self.table.name!r}: {rows.num_rows} rows arrived for {len(plan.rows)} rows planned")
        return {name: Ragged.from_arrow(rows.column(name)) for name in self.columns}

    def stats(self) -> dict[str, Any]:
        """This table's reads; the cache's row groups and bytes (of every table sharing it)."""
        return {"row_groups_read": self.reads, "bytes_read": self.bytes_read, "bytes_served": self.bytes_served,
                "cached_row_groups": len(self.cache), "cached_bytes": self.cache.nbytes}

    def _group(self, group: int) -> pa.Table:
        table = self.cache.get((*self._key, group))
        if table is not None:
            return table
        table = self._read(group)
        self.reads += 1
        self.bytes_read += table.nbytes
        self.cache.put((*self._key, group), table)
        return table

    def _read(self, group: int) -> pa.Table:
        return self.reader.read_group(group)

    def close(self) -> None:
        self.reader.close()


__all__ = ["RowGroupCache", "RowPlan", "StreamedRows", "TableRowReader"]
