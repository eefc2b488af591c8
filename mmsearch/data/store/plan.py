"""Which rows a reader visits in one epoch, and in what order (pure functions, no I/O).

The unit of I/O and of coarse shuffling is a Parquet row group (a few MiB). An epoch:
  1. lists every row group of the table (across shards) and, when shuffling, permutes them
     with a seed derived from ``(seed, epoch)``, so every epoch has a new order and every worker
     computes the same order without talking to the others;
  2. splits the concatenated row sequence into ``world_size`` contiguous, equal ranges
     (``total // world_size`` rows each; the at most ``world_size - 1`` leftover rows are
     skipped, different ones each shuffled epoch) and keeps range ``rank``;
  3. the reader then mixes rows within a window of row groups (``shuffle.py``).
So each row is seen exactly once per epoch across all ranks (when ``world_size`` divides the
row count), and only the row groups of one window are in memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mmsearch.data.store.schema import ShardInfo, StoreError


@dataclass(frozen=True)
class Piece:
    """Rows ``[start, stop)`` of row group ``group`` of shard ``shard`` (indices into the manifest)."""

    shard: int
    group: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 32-bit seed for ``(seed, epoch)``; the same in every process."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


def row_groups(shards: Sequence[ShardInfo]) -> list[Piece]:
    return [Piece(s, g, 0, n) for s, shard in enumerate(shards) for g, n in enumerate(shard.row_groups)]


def plan_epoch(
    shards: Sequence[ShardInfo],
    *,
    seed: int | None,
    rank: int = 0,
    world_size: int = 1,
    equal: bool = True,
) -> list[Piece]:
    """Pieces rank ``rank`` reads, in order. ``seed=None`` keeps storage order (no shuffle).

    ``equal=True`` gives every rank exactly ``total // world_size`` rows (so data-parallel
    workers run the same number of steps); ``equal=False`` spreads the remainder, one extra
    row to the first ranks, so nothing is skipped.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise StoreError(f"invalid rank {rank} for world_size {world_size}")
    units = row_groups(shards)
    if seed is not None:
        order = np.random.default_rng([seed, 0]).permutation(len(units))
        units = [units[i] for i in order]
    total = sum(u.rows for u in units)
    if equal:
        share = total // world_size
        lo, hi = rank * share, (rank + 1) * share
    else:
        lo, hi = total * rank // world_size, total * (rank + 1) // world_size
    pieces: list[Piece] = []
    offset = 0
    for unit in units:
        start, stop = max(lo, offset), min(hi, offset + unit.rows)
        if start < stop:
            pieces.append(Piece(unit.shard, unit.group, start - offset, stop - offset))
        offset += unit.rows
        if offset >= hi:
            break
    return pieces


def rows_for_rank(total: int, rank: int, world_size: int, equal: bool = True) -> int:
    if equal:
        return total // world_size
    return total * (rank + 1) // world_size - total * rank // world_size
