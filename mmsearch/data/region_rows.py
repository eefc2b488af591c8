"""Region features read per batch from a store's ``regions`` table (``data.regions: stream``).

``StoreTaskData`` with ``regions: memory`` holds a split's whole region bank (features and boxes)
as one :class:`~mmsearch.data.collate.Ragged`. :class:`StreamedRegions` keeps only what locates
each image's row -- shard, Parquet row group, row within it, plus ``image_id`` / ``image_h`` /
``image_w`` (a few bytes per image) -- and, for each batch, reads the row groups holding the batch's
images (only the ``features`` and ``boxes`` columns), takes those rows, and returns them as a
batch-local ``Ragged``. Collating from it gives exactly the in-memory batch (same rows, same
padding, same dtype conversion).

Memory: the batch's own rows, plus a least-recently-used cache of decoded row groups bounded by
``cache_bytes`` (a row group stays readable while the batch is assembled even with a cache of
0). Cost: a whole row group is read for any row of it, so random sample order reads about one
row group per distinct image of a batch (less when the cache holds the group); stores written for
streaming want about one image per row group (``StoreWriter(row_group_bytes=...)``, with more row
groups per file: ``row_groups_per_shard``).

Errors: a shard that cannot be opened or read (truncated, corrupted, gone) raises ``StoreError``
naming the store, the table and the shard file.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmsearch.data.collate import Ragged
from mmsearch.data.store import StoreError, StoreTable
from mmsearch.storage import pinned_endpoint

COLUMNS = ("features", "boxes")
_OPEN_FILES = 32  # Parquet files kept open (footers parsed) at a time; least recently used closed
# Above this many images per row group, a batch in random order decodes about that many times the
# rows it uses (measured: 11 images a group read 10x and made the stream the bottleneck of a
# 100 ms step; one image a group kept up, bench/README "Search-trial data streamed").
DENSE_ROW_GROUP_IMAGES = 4
LOG = logging.getLogger(__name__)


class StreamedRegions:
    """A split's region bank read from the store on demand (see the module docstring)."""

    def __init__(self, table: StoreTable, cache_bytes: int) -> None:
        if cache_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0, got {cache_bytes}")
        self.table, self.cache_bytes = table, int(cache_bytes)
        small = table.read_arrow(["image_id", "image_h", "image_w"])  # column projection: no features read
        self.image_ids = np.asarray(small.column("image_id").to_pylist(), dtype=object)
        self.sizes = np.stack([small.column("image_h").to_numpy(), small.column("image_w").to_numpy()], axis=1)
        # image row -> (row-group number across the table, row within the group)
        self.reader = RegionRowReader(table)
        counts = np.asarray([n for shard in table.manifest.shards for n in shard.row_groups], dtype=np.int64)
        self.image_group = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.image_offset = np.arange(int(counts.sum()), dtype=np.int64) - starts[self.image_group]
        if len(self.image_group) != len(self.image_ids):
            raise StoreError(f"{table.uri}: table 'regions' lists {len(self.image_group)} rows in its row groups "
                             f"but {len(self.image_ids)} image ids were read")
        self.images_per_group = len(self.image_ids) / max(1, len(counts))
        if self.images_per_group > DENSE_ROW_GROUP_IMAGES:
            LOG.warning("%s: 'regions' holds %.0f images per row group; streamed in random order, each batch decodes "
                        "about that many times the rows it uses. For data.regions: stream write the store with one image "
                        "per row group (precompute layout.row_group_kib=128 layout.row_groups_per_shard=64).",
                        table.uri, self.images_per_group)
        self._cache: OrderedDict[int, pa.Table] = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()
        self.reads = 0  # row groups read from storage (cache misses), for tests and the benchmark
        self.bytes_read = 0  # decoded bytes of those row groups (features and boxes)
        self.bytes_served = 0  # decoded bytes of the rows the batches took from them

    def __len__(self) -> int:
        return len(self.image_ids)

    def batch(self, image_rows: np.ndarray) -> tuple[Ragged, Ragged, np.ndarray, np.ndarray]:
        """``(features, boxes, local_rows, sizes)`` of the images at ``image_rows``: record
        ``local_rows[i]`` of the returned ``Ragged``s is image ``image_rows[i]``'s."""
        plan = self.plan(image_rows)
        features, boxes, sizes = self.assemble(plan, self.read(plan))
        return features, boxes, plan.local, sizes

    def read(self, plan: "RegionPlan") -> pa.Table:
        """The ``features`` / ``boxes`` rows of ``plan``'s images, read here (through the cache)."""
        with self._lock:  # batches are assembled in a prefetch thread (see ahead())
            rows = self.reader.read_rows(plan.groups, plan.offsets, self._group)
            self.bytes_served += rows.nbytes
        return rows

    def plan(self, image_rows: np.ndarray) -> "RegionPlan":
        """Where the distinct images of ``image_rows`` are stored (in storage order), and which of
        them each entry of ``image_rows`` is: what a reader elsewhere (a Ray Data task) needs."""
        unique, local = np.unique(np.asarray(image_rows, dtype=np.int64), return_inverse=True)
        return RegionPlan(unique, local.reshape(-1), self.image_group[unique], self.image_offset[unique])

    def assemble(self, plan: "RegionPlan", rows: pa.Table) -> tuple[Ragged, Ragged, np.ndarray]:
        """``(features, boxes, sizes)`` of ``plan``'s distinct images from their ``rows`` (the
        ``features`` / ``boxes`` columns, one row per distinct image, in the plan's order)."""
        if rows.num_rows != len(plan.images):
            raise StoreError(f"{self.table.uri}: table 'regions': {rows.num_rows} rows arrived for {len(plan.images)} images")
        features, boxes = (Ragged.from_arrow(rows.column(name)) for name in COLUMNS)
        return features, boxes, self.sizes[plan.images]

    def stats(self) -> dict[str, Any]:
        return {"row_groups_read": self.reads, "bytes_read": self.bytes_read, "bytes_served": self.bytes_served,
                "cached_row_groups": len(self._cache), "cached_bytes": self._cached_bytes}

    # -- row groups -------------------------------------------------------------------------------

    def _group(self, group: int) -> pa.Table:
        table = self._cache.get(group)
        if table is not None:
            self._cache.move_to_end(group)
            return table
        table = self._read(group)
        self.reads += 1
        self.bytes_read += table.nbytes
        if table.nbytes <= self.cache_bytes:
            self._cache[group] = table
            self._cached_bytes += table.nbytes
            while self._cached_bytes > self.cache_bytes:
                _, dropped = self._cache.popitem(last=False)
                self._cached_bytes -= dropped.nbytes
        return table

    def _read(self, group: int) -> pa.Table:
        return self.reader.read_group(group)

    def close(self) -> None:
        self.reader.close()
        self._cache.clear()
        self._cached_bytes = 0


@dataclass(frozen=True)
class RegionPlan:
    """The distinct images of a batch: ``images`` (image rows, ascending), where each is stored
    (``groups``: row group across the table, ``offsets``: row within it) and ``local`` (for each
    sample of the batch, which of ``images`` it shows)."""

    images: np.ndarray
    local: np.ndarray
    groups: np.ndarray
    offsets: np.ndarray


class RegionRowReader:
    """Reads the ``features`` / ``boxes`` columns of a ``regions`` table's row groups (no cache).

    Pickles as the table and its row-group list (open files are not sent), so a Ray Data task
    can read the rows a :class:`RegionPlan` names: :meth:`read_rows`.
    """

    def __init__(self, table: StoreTable) -> None:
        # The endpoint this process reads the table from travels with it (not the credentials:
        # each process takes its own from the standard chain), so a task elsewhere reads the same server.
        self.table = dataclasses.replace(table, location=pinned_endpoint(table.location))
        self.groups = [(s, g) for s, shard in enumerate(table.manifest.shards) for g in range(len(shard.row_groups))]
        self._files: OrderedDict[int, pq.ParquetFile] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {"table": self.table, "groups": self.groups}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.table, self.groups, self._files = state["table"], state["groups"], OrderedDict()

    def read_rows(self, groups: np.ndarray, offsets: np.ndarray,
                  read_group: Callable[[int], pa.Table] | None = None) -> pa.Table:
        """Rows ``offsets[i]`` of row groups ``groups[i]``, in that order; ``groups`` ascending (a
        plan's images are in storage order, so each group's rows form one run). ``read_group``:
        where whole row groups come from (default: :meth:`read_group`; the stream: its cache)."""
        groups, offsets = np.asarray(groups, dtype=np.int64), np.asarray(offsets, dtype=np.int64)
        if len(groups) > 1 and np.any(np.diff(groups) < 0):
            raise ValueError("read_rows needs the row groups in ascending order (a RegionPlan's order)")
        read_group = read_group or self.read_group
        runs_of, starts = np.unique(groups, return_index=True)
        parts = [read_group(int(g)).take(pa.array(run)) for g, run in zip(runs_of, np.split(offsets, starts[1:]))]
        return pa.concat_tables(parts) if parts else self.table.empty_arrow(list(COLUMNS))

    def read_group(self, group: int) -> pa.Table:
        shard_index, row_group = self.groups[group]
        shard = self.table.manifest.shards[shard_index]
        try:
            return self._file(shard_index).read_row_group(row_group, columns=list(COLUMNS))
        except Exception as exc:  # noqa: BLE001 - name the shard in whatever went wrong
            self._close(shard_index)
            raise StoreError(f"{self.table.uri}: table 'regions', shard {shard.file}: "
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


__all__ = ["RegionPlan", "RegionRowReader", "StreamedRegions"]
