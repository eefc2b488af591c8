"""Which training samples a worker sees: the whole ``train`` part, or this rank's share of it.

One process trains on ``TaskData.batches("train", ...)`` (order a pure function of ``(seed,
epoch)``). With several workers each rank needs a disjoint share of the same size (DDP steps in
lockstep): :class:`StridedShard` deals a shared permutation out by rank, as torch's
``DistributedSampler`` does (under Ray Train too: ``mmsearch.orchestration.train_rows``, where
streamed region rows then arrive through Ray Data). A worker collates its samples with
:func:`part_collator`.
"""
from __future__ import annotations

import functools
from typing import Callable, Iterator, Protocol

import numpy as np

from mmsearch.batch import MultimodalBatch
from mmsearch.data.store import epoch_seed
from mmsearch.data.task_data import TaskData, shuffled_order

Collate = Callable[[np.ndarray], MultimodalBatch]


class TrainShard(Protocol):
    """This worker's training batches, epoch by epoch (every rank gets the same number)."""

    def epoch(self, epoch: int) -> Iterator[MultimodalBatch]: ...


def part_collator(data: TaskData, part: str) -> Collate:
    """``collate(positions) -> MultimodalBatch`` of the samples at ``positions`` (0-based, within
    ``part``), collated exactly as ``data.batches(part, ...)`` collates them.

    Uses the ``TaskData.collate_rows(part, positions)`` of the implementation.
    """
    collate_rows = getattr(data, "collate_rows", None)
    if not callable(collate_rows):
        raise TypeError(
            f"{type(data).__name__} cannot collate samples by position: give it a collate_rows(part, positions) "
            "method to train with several workers"
        )
    return functools.partial(collate_rows, part)


def positions_per_rank(num_samples: int, world_size: int) -> int:
    """Samples each rank gets per epoch: an equal share, the remainder dropped (as Ray Train's split)."""
    return num_samples // world_size


class StridedShard:
    """Rank ``rank``'s share of ``part``: every ``world_size``-th sample of a permutation drawn from
    ``(seed, epoch)`` (the same on every rank, and the one the precomputed data sets'
    ``batches`` draws: one rank of one gets their one-process batches), cut to an equal count, batched."""

    def __init__(self, data: TaskData, *, rank: int, world_size: int, batch_size: int, seed: int,
                 drop_last: bool, part: str = "train") -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self._collate = part_collator(data, part)
        self._count = data.num_samples(part)  # type: ignore[arg-type]
        self._order = getattr(data, "epoch_order", None)  # a precomputed data set's (data.shuffle_block)
        self._block = getattr(data, "shuffle_block", 1)  # otherwise its runs of samples kept together, if any
        self._part = part
        self.rank, self.world_size, self.batch_size, self.seed, self.drop_last = rank, world_size, batch_size, seed, drop_last

    def positions(self, epoch: int) -> np.ndarray:
        if callable(self._order):  # the order its batches take
            order = self._order(self._part, epoch=epoch, seed=self.seed)
        else:
            order = shuffled_order(self._count, epoch_seed(self.seed, epoch), self._block)
        return order[: positions_per_rank(self._count, self.world_size) * self.world_size][self.rank :: self.world_size]

    def batch_positions(self, epoch: int) -> Iterator[np.ndarray]:
        """This rank's positions of ``epoch``, cut into batches (the last one shorter, or dropped)."""
        mine = self.positions(epoch)
        stop = len(mine) - len(mine) % self.batch_size if self.drop_last else len(mine)
        for start in range(0, stop, self.batch_size):
            yield mine[start : start + self.batch_size]

    def epoch(self, epoch: int) -> Iterator[MultimodalBatch]:
        for positions in self.batch_positions(epoch):
            yield self._collate(positions)


__all__ = ["Collate", "StridedShard", "TrainShard", "part_collator", "positions_per_rank"]
