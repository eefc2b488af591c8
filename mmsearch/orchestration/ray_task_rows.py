"""Streamed region rows delivered by Ray Data: the batches of a ``data.regions: stream`` data set,
their region features and boxes read by Ray Data tasks instead of the process that trains.

For an ordered list of batches (sample positions of one part), :class:`RayDataRegionRows` builds a
Ray Data dataset of the batches' plans (where each batch's distinct images are stored:
:class:`~mmsearch.data.region_rows.RegionPlan`); ``map_batches`` reads those rows from the store's
Parquet row groups (:func:`read_planned_rows`, named shard files in its errors), and the rows come
back as Arrow blocks through the object store, in order; the process collates each batch with the
text and targets it holds (``collate_rows(part, positions, region_rows)``), the next one on a
thread while the caller uses this one. So a batch is exactly the one the local reader would give,
and the process never reads region features itself.

Used by Ray Train workers (:mod:`.train_rows`) and by search trials under Tune
(:class:`RayDataTaskData`, which the trial wraps around its data when it streams). One dataset
per pass over a part; its start costs about 0.3-0.8 s on 2 cores (measured: a Ray Data execution of
26 small tasks, from_arrow -> map_batches, the first one in a process about 4 s with the worker
start). The reading tasks ask for ``read_cpus`` CPUs each (default 0: they mostly wait on
storage and decode in Arrow, and a cluster whose CPUs are all held by trials or training workers
still runs them), at most ``read_tasks`` at a time.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import ray.data

from mmsearch.batch import MultimodalBatch
from mmsearch.data.region_rows import RegionRowReader
from mmsearch.data.store.prefetch import ahead
from mmsearch.data.task_data import Part, TaskInfo
from mmsearch.orchestration.quiet import quiet_data_context

BATCH_COLUMN = "batch"  # which batch of the pass a plan / region row belongs to
PLAN_COLUMNS = ("group", "offset")  # row group across the regions table, row within it


def read_planned_rows(plans: pa.Table, reader: RegionRowReader) -> pa.Table:
    """The Ray Data call: the region rows ``plans`` names (whole batches or parts of them), each
    tagged with its batch; a shard that cannot be read raises ``StoreError`` naming the file."""
    batch = plans.column(BATCH_COLUMN).to_numpy()
    groups, offsets = (plans.column(name).to_numpy() for name in PLAN_COLUMNS)
    parts = []
    for start, stop in runs(batch):
        rows = reader.read_rows(groups[start:stop], offsets[start:stop])
        parts.append(rows.append_column(BATCH_COLUMN, pa.array(batch[start:stop], pa.int64())))
    return pa.concat_tables(parts)


@ray.remote(num_cpus=0)
def _imported() -> bool:
    """Nothing: running it makes a Ray worker import this module (pyarrow, torch, the store reader)."""
    return True


def warm_up(read_tasks: int = 2) -> list[ray.ObjectRef]:
    """Have ``read_tasks`` Ray workers import what the reading tasks run, now, while the caller
    opens its data and builds its model: a process's first pass reached its first batch after about
    4 s without, 1.5-1.7 s with 3 s of head start (a probe on this machine). Returns the refs."""
    return [_imported.remote() for _ in range(read_tasks)]


def runs(values: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of equal consecutive ``values``."""
    if len(values) == 0:
        return []
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(values)) + 1, [len(values)]])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def streams_regions(data: Any, part: Part = "train") -> bool:
    """Whether ``data`` reads ``part``'s regions from a store (``regions: stream``)."""
    plan = getattr(data, "region_plan", None)
    return callable(plan) and data.num_samples(part) > 0 and plan(part, np.zeros(1, np.int64)) is not None


class RayDataRegionRows:
    """Batches of ``data`` whose region rows Ray Data tasks read (see the module docstring).

    ``data``: a ``TaskData`` with ``region_plan`` / ``region_reader`` / ``collate_rows(part,
    positions, region_rows)`` (``mmsearch.data.tasks.StoreTaskData`` with ``regions: stream``).
    """

    def __init__(self, data: Any, *, read_cpus: float = 0.0, read_tasks: int = 2, prefetch_blocks: int = 2) -> None:
        self.data = data
        self.read_cpus, self.read_tasks, self.prefetch_blocks = read_cpus, read_tasks, prefetch_blocks
        self._readers: dict[str, RegionRowReader] = {}
        self.blocks_received = 0  # Arrow blocks of region rows that came through Ray Data
        self.rows_received = 0  # region rows in them

    def batches(self, part: Part, batches: Sequence[np.ndarray]) -> Iterator[MultimodalBatch]:
        """The batches of samples ``batches`` (positions within ``part``), in order."""
        batches = list(batches)
        if not batches:
            return
        blocks = self.dataset(part, batches).iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=self.prefetch_blocks)
        yield from ahead(lambda item: self.data.collate_rows(part, batches[item[0]], item[1]), self._batch_rows(blocks))

    def dataset(self, part: Part, batches: Sequence[np.ndarray]) -> ray.data.Dataset:
        """One pass's Ray Data dataset: a plan block per batch, mapped to that batch's region rows
        (a block per batch each way: Ray Data merges a task's outputs into one block, and 8 batches
        a block spilled 0.4-1.2 GB at 4x-16x behind a 256 MiB object store, bench/README.md)."""
        if part not in self._readers:
            self._readers[part] = self.data.region_reader(part)
        blocks = []
        for index, positions in enumerate(batches):
            plan = self.data.region_plan(part, positions)
            blocks.append(pa.table({BATCH_COLUMN: np.full(len(plan.images), index, np.int64),
                                    "group": plan.groups.astype(np.int64), "offset": plan.offsets.astype(np.int64)}))
        # A dataset seals a copy of the current DataContext: in order (the batches already are in
        # the pass's order), no progress bars for a process's private dataset. from_blocks, not
        # from_arrow: from_arrow reads each block's schema in a task of one CPU, which never starts
        # while trials or training workers hold every CPU (the pass hung there under Tune).
        context = quiet_data_context(ray.data.DataContext.get_current().copy())
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        with ray.data.DataContext.current(context):
            return ray.data.from_blocks(blocks).map_batches(
                read_planned_rows, fn_args=(self._readers[part],), batch_format="pyarrow", batch_size=None, zero_copy_batch=True,
                num_cpus=self.read_cpus, compute=ray.data.TaskPoolStrategy(size=self.read_tasks))

    def stats(self) -> dict[str, int]:
        """Totals so far: Arrow blocks and region rows received through Ray Data."""
        return {"ray_data_blocks": self.blocks_received, "ray_data_rows": self.rows_received}

    def _batch_rows(self, blocks: Iterator[pa.Table]) -> Iterator[tuple[int, pa.Table]]:
        """``(batch index, its region rows)`` from blocks in order (a batch's rows may span blocks,
        and a block may hold several batches)."""
        pending: list[pa.Table] = []
        current = -1
        for block in blocks:
            self.blocks_received += 1
            self.rows_received += block.num_rows
            batch = block.column(BATCH_COLUMN).to_numpy()
            for start, stop in runs(batch):
                if int(batch[start]) != current and pending:
                    yield current, pa.concat_tables(pending).drop_columns([BATCH_COLUMN])
                    pending = []
                current = int(batch[start])
                pending.append(block.slice(start, stop - start))
        if pending:
            yield current, pa.concat_tables(pending).drop_columns([BATCH_COLUMN])


class RayDataTaskData:
    """A streamed ``TaskData`` whose batches get their region rows through Ray Data: the same
    batches, in the same order, as ``inner.batches`` (a search trial under Tune wraps its data so)."""

    def __init__(self, inner: Any, **options: Any) -> None:
        self.inner = inner
        self.info: TaskInfo = inner.info
        self.rows = RayDataRegionRows(inner, **options)

    def num_samples(self, part: Part) -> int:
        return self.inner.num_samples(part)

    def batches(self, part: Part, *, batch_size: int, epoch: int = 0, seed: int = 0, shuffle: bool = True,
                drop_last: bool = False) -> Iterator[MultimodalBatch]:
        order = self.inner.batch_positions(part, batch_size=batch_size, epoch=epoch, seed=seed, shuffle=shuffle, drop_last=drop_last)
        return self.rows.batches(part, order)

    def collate_rows(self, part: Part, positions: np.ndarray) -> MultimodalBatch:
        return self.inner.collate_rows(part, positions)

    def stats(self) -> dict[str, int]:
        return self.rows.stats()

    def __getattr__(self, name: str) -> Any:  # the inner data's other attributes (arch_images, ...)
        if name == "inner":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


def ray_data_task_data(data: Any) -> Any:
    """``data`` wrapped in :class:`RayDataTaskData` when it streams its regions, else ``data``."""
    return RayDataTaskData(data) if streams_regions(data) and callable(getattr(data, "batch_positions", None)) else data


__all__ = ["BATCH_COLUMN", "RayDataRegionRows", "RayDataTaskData", "ray_data_task_data", "read_planned_rows", "streams_regions",
           "warm_up"]
