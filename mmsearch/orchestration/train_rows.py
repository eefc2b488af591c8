"""A Ray Train worker's training batches, epoch by epoch: its share of the epoch's permutation,
and, when the data set streams its regions, the latent rows delivered by Ray Data.

Which samples: every rank takes its share of the same permutation of the train part, drawn from
``(seed, epoch)`` (:class:`~mmsearch.recipes.train_derived.data.StridedShard`: every
``world_size``-th sample, an equal count per rank, the remainder of ``num_samples % world_size``
left out of that epoch). So the shares are disjoint and the same size (DDP steps in lockstep),
one worker over a precomputed data set gets exactly the batches of a one-process run, and a run
resumed after epoch ``e`` continues with the batches an uninterrupted run would have had, on any
number of workers.
Ray Train's own dataset split (``get_dataset_shard`` on a trainer dataset) cannot promise that:
which blocks reach which worker depends on timing, and its order cannot change per epoch
reproducibly.

Where the rows come from (:func:`worker_shard`):

* ``data.regions: stream`` (:class:`RayDataRegionShard`): each epoch is a Ray Data dataset of
  the worker's batch plans (where each batch's distinct images are stored:
  :class:`~mmsearch.data.region_rows.RegionPlan`); ``map_batches`` reads those rows (features and
  boxes) from the store's Parquet row groups in Ray Data tasks, and the worker receives them as
  Arrow blocks through the object store, in order, and collates them with the text and targets it
  holds. The worker never reads region features itself and holds only the blocks in flight.
* otherwise (regions in memory, generated data): the worker collates its batches from its own
  ``TaskData``, the next on a thread while this one trains.

The reading tasks ask for ``read_cpus`` CPUs each (default 0: they mostly wait on storage and
decode in Arrow, and a cluster whose CPUs are all held by training workers still runs them),
at most ``read_tasks`` at a time.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import ray.data

from mmsearch.batch import MultimodalBatch
from mmsearch.data.region_rows import RegionRowReader
from mmsearch.data.store.prefetch import ahead
from mmsearch.data.task_data import TaskData
from mmsearch.orchestration.quiet import quiet_data_context
from mmsearch.recipes.train_derived.data import StridedShard, TrainShard, part_collator

BATCH_COLUMN = "batch"  # which batch of the epoch a plan / region row belongs to
PLAN_COLUMNS = ("group", "offset")  # row group across the regions table, row within it


def read_planned_rows(plans: pa.Table, reader: RegionRowReader) -> pa.Table:
    """The Ray Data task: the region rows ``plans`` names (one or more whole batches), each tagged
    with its batch; a shard that cannot be read raises ``StoreError`` naming the file."""
    batch = plans.column(BATCH_COLUMN).to_numpy()
    groups, offsets = (plans.column(name).to_numpy() for name in PLAN_COLUMNS)
    parts = []
    for start, stop in _runs(batch):
        rows = reader.read_rows(groups[start:stop], offsets[start:stop])
        parts.append(rows.append_column(BATCH_COLUMN, pa.array(batch[start:stop], pa.int64())))
    return pa.concat_tables(parts)


def _runs(values: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of equal consecutive ``values``."""
    if len(values) == 0:
        return []
    edges = np.flatnonzero(np.diff(values)) + 1
    bounds = np.concatenate([[0], edges, [len(values)]])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


class LocalShard:
    """This rank's share, collated from its own ``TaskData`` (the next batch on a thread)."""

    def __init__(self, data: TaskData, *, rank: int, world_size: int, batch_size: int, seed: int, drop_last: bool) -> None:
        self.order = StridedShard(data, rank=rank, world_size=world_size, batch_size=batch_size, seed=seed, drop_last=drop_last)
        self._collate = part_collator(data, "train")

    def epoch(self, epoch: int) -> Iterator[MultimodalBatch]:
        yield from ahead(self._collate, self.order.batch_positions(epoch))


class RayDataRegionShard:
    """This rank's share, its region rows read by Ray Data tasks (see the module docstring).

    ``data``: a ``TaskData`` with ``region_plan`` / ``region_reader`` / ``collate_rows(part,
    positions, region_rows)`` (``mmsearch.data.tasks.StoreTaskData`` with ``regions: stream``).
    """

    def __init__(self, data: Any, *, rank: int, world_size: int, batch_size: int, seed: int, drop_last: bool,
                 read_cpus: float = 0.0, read_tasks: int = 2, prefetch_blocks: int = 2) -> None:
        self.data = data
        self.order = StridedShard(data, rank=rank, world_size=world_size, batch_size=batch_size, seed=seed, drop_last=drop_last)
        self.reader = data.region_reader("train")
        self.read_cpus, self.read_tasks, self.prefetch_blocks = read_cpus, read_tasks, prefetch_blocks
        self.blocks_received = 0  # Arrow blocks of region rows that came through Ray Data (all epochs)
        self.rows_received = 0  # region rows in them

    def dataset(self, batches: list[np.ndarray]) -> ray.data.Dataset:
        """One epoch's Ray Data dataset: a plan block per batch, mapped to that batch's region rows."""
        blocks = []
        for index, positions in enumerate(batches):
            plan = self.data.region_plan("train", positions)
            blocks.append(pa.table({BATCH_COLUMN: np.full(len(plan.images), index, np.int64),
                                    "group": plan.groups.astype(np.int64), "offset": plan.offsets.astype(np.int64)}))
        # A dataset seals a copy of the current DataContext: in order (the batches are already in
        # the epoch's order), no progress bars for a worker's private dataset.
        context = quiet_data_context(ray.data.DataContext.get_current().copy())
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        with ray.data.DataContext.current(context):
            return ray.data.from_arrow(blocks).map_batches(
                read_planned_rows, fn_args=(self.reader,), batch_format="pyarrow", batch_size=None, zero_copy_batch=True,
                num_cpus=self.read_cpus, compute=ray.data.TaskPoolStrategy(size=self.read_tasks))

    def epoch(self, epoch: int) -> Iterator[MultimodalBatch]:
        batches = list(self.order.batch_positions(epoch))
        if not batches:
            return
        arriving = self._batch_rows(self.dataset(batches).iter_batches(batch_size=None, batch_format="pyarrow",
                                                                       prefetch_batches=self.prefetch_blocks))
        yield from ahead(lambda item: self.data.collate_rows("train", batches[item[0]], item[1]), arriving)

    def stats(self) -> dict[str, int]:
        """Reported each epoch (totals so far): Arrow blocks and region rows received through Ray Data."""
        return {"ray_data_blocks": self.blocks_received, "ray_data_rows": self.rows_received}

    def _batch_rows(self, blocks: Iterator[pa.Table]) -> Iterator[tuple[int, pa.Table]]:
        """``(batch index, its region rows)`` from blocks in order (a batch may span blocks)."""
        pending: list[pa.Table] = []
        current = -1
        for block in blocks:
            self.blocks_received += 1
            self.rows_received += block.num_rows
            batch = block.column(BATCH_COLUMN).to_numpy()
            for start, stop in _runs(batch):
                if int(batch[start]) != current and pending:
                    yield current, pa.concat_tables(pending).drop_columns([BATCH_COLUMN])
                    pending = []
                current = int(batch[start])
                pending.append(block.slice(start, stop - start))
        if pending:
            yield current, pa.concat_tables(pending).drop_columns([BATCH_COLUMN])


def streams_regions(data: TaskData) -> bool:
    """Whether ``data`` reads its training regions from a store (``regions: stream``)."""
    plan = getattr(data, "region_plan", None)
    return callable(plan) and data.num_samples("train") > 0 and plan("train", np.zeros(1, np.int64)) is not None


def worker_shard(data: TaskData, *, rank: int, world_size: int, batch_size: int, seed: int, drop_last: bool) -> TrainShard:
    """The shard a Ray Train worker trains on: region rows through Ray Data when ``data`` streams them."""
    kind = RayDataRegionShard if streams_regions(data) else LocalShard
    return kind(data, rank=rank, world_size=world_size, batch_size=batch_size, seed=seed, drop_last=drop_last)


__all__ = ["BATCH_COLUMN", "LocalShard", "RayDataRegionShard", "read_planned_rows", "streams_regions", "worker_shard"]
