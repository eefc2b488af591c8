"""Epoch streams of torch batches from a store: one interface, with or without Ray.

A training recipe takes a :class:`BatchStream` and never knows where batches come from:
:class:`LocalStoreStream` reads the Parquet shards itself (plain pyarrow; a laptop, a test, a
small store, or one process per rank with ``rank`` / ``world_size``), and
``mmsearch.orchestration.ray_data.RayDataStream`` streams them through Ray Data (a cluster, or a
Ray Train dataset shard). Both yield the same batch dicts (``mmsearch.data.store.decode``).
"""
from __future__ import annotations

from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

import torch

from mmsearch.data.store.decode import decode_torch
from mmsearch.data.store.plan import epoch_seed, rows_for_rank
from mmsearch.data.store.reader import DEFAULT_WINDOW_ROW_GROUPS, Store, StoreTable, open_store
from mmsearch.data.store.schema import ColumnSpec, StoreError

TorchBatch = dict[str, Any]  # str -> torch.Tensor (or list[str] for string columns)


@runtime_checkable
class BatchStream(Protocol):
    """Batches of one table for one worker, epoch by epoch."""

    @property
    def columns(self) -> dict[str, ColumnSpec]:
        """Specs of the columns in every batch."""

    @property
    def rows_per_epoch(self) -> int:
        """Rows this worker sees per epoch (for schedules: steps = ceil or floor of rows / batch)."""

    def epoch(self, epoch: int, batch_size: int, seed: int = 0, *, shuffle: bool = True, drop_last: bool = False) -> Iterator[TorchBatch]:
        """Batches of one epoch; the order depends on ``(seed, epoch)`` and differs between epochs."""


class LocalStoreStream:
    """Plain-pyarrow epochs over a store table, no Ray needed.

    Shuffling per epoch: the order of all row groups (across shards) is permuted with a seed
    derived from ``(seed, epoch)``, then rows are mixed within windows of ``window_row_groups``
    row groups. With ``world_size > 1`` each rank reads its own contiguous share of that order:
    equal shares (``total // world_size`` rows, ``equal=True``) so data-parallel ranks step
    together. Memory: one window plus a few row groups read ahead.
    """

    def __init__(
        self,
        table: StoreTable,
        columns: Sequence[str] | None = None,
        *,
        rank: int = 0,
        world_size: int = 1,
        equal: bool = True,
        window_row_groups: int = DEFAULT_WINDOW_ROW_GROUPS,
        float_dtype: torch.dtype | None = torch.float32,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise StoreError(f"invalid rank {rank} for world_size {world_size}")
        self.table = table
        self._columns = table.select(columns)
        self.rank, self.world_size, self.equal = rank, world_size, equal
        self.window_row_groups = window_row_groups
        self.float_dtype = float_dtype

    @classmethod
    def open(cls, store: Store | str, table: str, columns: Sequence[str] | None = None, **kwargs: Any) -> "LocalStoreStream":
        store = store if isinstance(store, Store) else open_store(store)
        return cls(store.table(table), columns, **kwargs)

    @property
    def columns(self) -> dict[str, ColumnSpec]:
        return dict(self._columns)

    @property
    def rows_per_epoch(self) -> int:
        return rows_for_rank(self.table.num_rows, self.rank, self.world_size, self.equal)

    def epoch(self, epoch: int, batch_size: int, seed: int = 0, *, shuffle: bool = True, drop_last: bool = False) -> Iterator[TorchBatch]:
        arrow_batches = self.table.iter_arrow(
            batch_size,
            list(self._columns),
            shuffle_seed=epoch_seed(seed, epoch) if shuffle else None,
            rank=self.rank,
            world_size=self.world_size,
            equal=self.equal,
            window_row_groups=self.window_row_groups,
            drop_last=drop_last,
        )
        for batch in arrow_batches:
            yield decode_torch(batch, self._columns, self.float_dtype)
