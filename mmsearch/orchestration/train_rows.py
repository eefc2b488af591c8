"""A Ray Train worker's training batches, epoch by epoch: its share of the epoch's permutation,
and, when the data set streams its rows, the latent rows delivered by Ray Data.

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

* ``data.regions: stream`` (:class:`RayDataShard`): the streamed rows of the worker's batches
  (region features and boxes; with ``text_input: states`` the token states) are read by Ray Data
  tasks and received through the object store
  (:class:`~mmsearch.orchestration.ray_task_rows.RayDataTaskRows`, one dataset per epoch; the
  first batches of the first epoch read by the worker itself while Ray Data starts); the worker
  holds only the batches in flight.
* otherwise (regions in memory, generated data): the worker collates its batches from its own
  ``TaskData``, the next on a thread while this one trains.
"""
from __future__ import annotations

from typing import Any, Iterator

from mmsearch.batch import MultimodalBatch
from mmsearch.data.store.prefetch import ahead
from mmsearch.data.task_data import TaskData
from mmsearch.orchestration.ray_task_rows import RayDataTaskRows, reads_through_ray_data
from mmsearch.recipes.train_derived.data import StridedShard, TrainShard, part_collator


class LocalShard:
    """This rank's share, collated from its own ``TaskData`` (the next batch on a thread)."""

    def __init__(self, data: TaskData, *, rank: int, world_size: int, batch_size: int, seed: int, drop_last: bool) -> None:
        self.order = StridedShard(data, rank=rank, world_size=world_size, batch_size=batch_size, seed=seed, drop_last=drop_last)
        self._collate = part_collator(data, "train")

    def epoch(self, epoch: int) -> Iterator[MultimodalBatch]:
        yield from ahead(self._collate, self.order.batch_positions(epoch))


class RayDataShard:
    """This rank's share, its streamed rows read by Ray Data tasks (see the module docstring)."""

    def __init__(self, data: Any, *, rank: int, world_size: int, batch_size: int, seed: int, drop_last: bool,
                 **options: Any) -> None:
        self.order = StridedShard(data, rank=rank, world_size=world_size, batch_size=batch_size, seed=seed, drop_last=drop_last)
        self.rows = RayDataTaskRows(data, **{"settle_each_pass": False, **options})  # a worker settles at its end

    def epoch(self, epoch: int) -> Iterator[MultimodalBatch]:
        return self.rows.batches("train", self.order.batch_positions(epoch))

    def stats(self) -> dict[str, int]:
        """Reported each epoch (totals so far): Arrow blocks and streamed rows received through Ray Data."""
        return self.rows.stats()

    def settle(self) -> None:
        """Before the worker ends: no reading task left in flight (:meth:`RayDataTaskRows.settle`)."""
        self.rows.settle()


def worker_shard(data: TaskData, *, rank: int, world_size: int, batch_size: int, seed: int, drop_last: bool,
                 **options: Any) -> TrainShard:
    """The shard a Ray Train worker trains on: its streamed rows through Ray Data when ``data``
    streams them from enough MiB (:func:`~mmsearch.orchestration.ray_task_rows.reads_through_ray_data`;
    ``options``: :class:`~mmsearch.orchestration.ray_task_rows.RayDataTaskRows`'s)."""
    if reads_through_ray_data(data):
        return RayDataShard(data, rank=rank, world_size=world_size, batch_size=batch_size, seed=seed, drop_last=drop_last, **options)
    return LocalShard(data, rank=rank, world_size=world_size, batch_size=batch_size, seed=seed, drop_last=drop_last)


__all__ = ["LocalShard", "RayDataShard", "worker_shard"]
