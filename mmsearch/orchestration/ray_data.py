"""Stream a latent store through Ray Data into torch batches (the only store code that imports Ray).

* :func:`store_dataset` reads exactly the shards a store's manifest lists (never a directory
  listing, so half-written or replaced files are never read), with blocks capped at
  ``target_block_bytes`` (default: 1/32 of the object store, at most 16 MiB) so they stream
  through a small object store without spilling.
* :class:`RayDataStream` implements ``mmsearch.data.store.BatchStream`` on top of it. Per
  epoch, the shard order is permuted from ``(seed, epoch)``; whole blocks are copied out of
  the object store as they arrive and shuffled in a bounded window on the heap by the same
  code as the plain-pyarrow ``LocalStoreStream``, and decoded by the same code, so both
  streams yield identical batch dicts (``mmsearch.data.store.decode``). It takes a
  driver-side dataset built from a store (:meth:`RayDataStream.from_store`) or a Ray Train
  dataset shard (:func:`train_shard_stream`).

Two measured reasons for doing the last steps ourselves: Ray's ``local_shuffle_buffer_size``
keeps its window as pinned object-store blocks (it spilled with a 100 MiB store and a 64 MiB
window), and ``iter_torch_batches`` stacks ``vector`` columns but cannot pad ``sequence`` /
``list`` columns.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np
import ray
import ray.data
import torch
from ray.data import FileShuffleConfig

from mmsearch.data.store import ColumnSpec, Store, StoreError, StoreTable, decode_torch, epoch_seed, open_store
from mmsearch.data.store import shuffle as shuffle_rows
from mmsearch.data.store.plan import rows_for_rank
from mmsearch.orchestration.quiet import quiet_data_context

MiB = 2**20
# Block size cap: blocks of 1/32 of the object store streamed without spilling in every case
# measured (Ray's default of 128 MiB spilled with a 300 MiB store, environment.md section 4;
# 16 MiB blocks spilled with a 100 MiB store, 8 MiB ones did not).
MAX_BLOCK_BYTES = 16 * MiB
BLOCK_FRACTION_OF_OBJECT_STORE = 1 / 32
# The shuffle window (on the heap) holds about this many bytes of rows.
DEFAULT_SHUFFLE_WINDOW_BYTES = 64 * MiB


def default_block_bytes() -> int:
    """``MAX_BLOCK_BYTES``, or 1/32 of the connected cluster's object store if that is less."""
    store = ray.cluster_resources().get("object_store_memory", 0) if ray.is_initialized() else 0
    if store <= 0:
        return MAX_BLOCK_BYTES
    return int(max(MiB, min(MAX_BLOCK_BYTES, store * BLOCK_FRACTION_OF_OBJECT_STORE)))


def _table_of(store_or_uri: Store | StoreTable | str, table: str | None) -> StoreTable:
    if isinstance(store_or_uri, StoreTable):
        return store_or_uri
    store = store_or_uri if isinstance(store_or_uri, Store) else open_store(store_or_uri)
    if table is None:
        if len(store.tables) != 1:
            raise StoreError(f"{store.uri}: name the table to read (store has {store.tables})")
        table = store.tables[0]
    return store.table(table)


def store_dataset(
    store_or_uri: Store | StoreTable | str,
    table: str | None = None,
    columns: Sequence[str] | None = None,
    *,
    shuffle_seed: int | None = None,
    reseed_each_execution: bool = True,
    target_block_bytes: int | None = None,
    preserve_order: bool = False,
) -> ray.data.Dataset:
    """A Ray Dataset over one table of a store, reading exactly the manifest's shards.

    ``shuffle_seed`` permutes the shard order; with ``reseed_each_execution`` (default) every
    execution (epoch) of the dataset gets a new permutation, which is what a dataset handed to
    a Ray Train trainer needs. Blocks hold at most about ``target_block_bytes`` (default:
    :func:`default_block_bytes`).
    ``preserve_order`` makes blocks arrive in read order rather than completion order (a
    reproducible row order, at some cost in pipelining).
    """
    handle = _table_of(store_or_uri, table)
    specs = handle.select(columns)
    if handle.num_rows == 0:
        raise StoreError(f"{handle.uri}: table {handle.name!r} is empty")
    shuffle = None
    if shuffle_seed is not None:
        shuffle = FileShuffleConfig(seed=int(shuffle_seed), reseed_after_execution=reseed_each_execution)
    # A dataset seals a copy of the current DataContext when created, and the Parquet read
    # sizes its blocks from it: scope a copy with our block size to this call only.
    context = quiet_data_context(ray.data.DataContext.get_current().copy())  # a quiet job: no execution plans
    context.target_max_block_size = int(target_block_bytes or default_block_bytes())
    context.execution_options.preserve_order = preserve_order
    with ray.data.DataContext.current(context):
        dataset = ray.data.read_parquet(
            handle.shard_paths(),
            filesystem=handle.filesystem,
            partitioning=None,
            shuffle=shuffle,
            file_extensions=None,
        )
    if list(specs) != list(handle.columns):
        dataset = dataset.select_columns(list(specs))
    return dataset


def stored_bytes(table: StoreTable) -> int:
    """The table's bytes on storage, from its manifest (no file is opened)."""
    return sum(shard.bytes for shard in table.manifest.shards)


def default_shuffle_buffer_rows(table: StoreTable, batch_size: int = 1) -> int:
    """Rows in about ``DEFAULT_SHUFFLE_WINDOW_BYTES`` (from the stored bytes per row), >= one batch."""
    per_row = max(1.0, stored_bytes(table) / max(table.num_rows, 1))
    return max(batch_size, int(DEFAULT_SHUFFLE_WINDOW_BYTES / per_row))


class RayDataStream:
    """``BatchStream`` over Ray Data: a store table on the driver, or a Ray Train dataset shard.

    Build with :meth:`from_store` (driver; a fresh read per epoch whose shard permutation and
    shuffle seed depend only on ``(seed, epoch)``) or :func:`train_shard_stream`
    (inside a Train worker; the trainer's dataset must come from ``store_dataset(...,
    shuffle_seed=...)`` so the shard order changes per epoch; which rows reach which worker
    then depends on timing, so shard epochs are not reproducible row for row).
    ``rows_per_epoch`` is what this worker will see (Ray Train splits with ``equal=True``:
    ``total // world_size``).
    """

    def __init__(
        self,
        source: ray.data.Dataset | ray.data.DataIterator,
        columns: dict[str, ColumnSpec],
        *,
        rows_per_epoch: int,
        shuffle_buffer_rows: int | None = None,  # shuffle window on the heap, in rows
        prefetch_blocks: int = 2,
        float_dtype: torch.dtype | None = torch.float32,
    ) -> None:
        self._source = source
        self._per_epoch_dataset: Callable[[int | None], ray.data.Dataset] | None = None
        self._columns = dict(columns)
        self._rows = int(rows_per_epoch)
        self.shuffle_buffer_rows = shuffle_buffer_rows
        self.prefetch_blocks = prefetch_blocks
        self.float_dtype = float_dtype

    @classmethod
    def from_store(
        cls,
        store_or_uri: Store | StoreTable | str,
        table: str | None = None,
        columns: Sequence[str] | None = None,
        *,
        target_block_bytes: int | None = None,
        deterministic: bool = True,
        **kwargs: Any,
    ) -> "RayDataStream":
        """A stream that reads the store afresh each epoch. ``deterministic`` (default) keeps
        Ray's read order, so an epoch's batches depend only on ``(seed, epoch)`` and a resumed
        run sees the same batches as an uninterrupted one."""
        handle = _table_of(store_or_uri, table)
        specs = handle.select(columns)

        def make(seed: int | None) -> ray.data.Dataset:
            return store_dataset(
                handle,
                columns=list(specs),
                shuffle_seed=seed,
                reseed_each_execution=False,
                target_block_bytes=target_block_bytes,
                preserve_order=deterministic,
            )

        kwargs.setdefault("shuffle_buffer_rows", default_shuffle_buffer_rows(handle))
        stream = cls(make(None), specs, rows_per_epoch=handle.num_rows, **kwargs)
        stream._per_epoch_dataset = make
        return stream

    @property
    def columns(self) -> dict[str, ColumnSpec]:
        return dict(self._columns)

    @property
    def rows_per_epoch(self) -> int:
        return self._rows

    def epoch(self, epoch: int, batch_size: int, seed: int = 0, *, shuffle: bool = True, drop_last: bool = False) -> Iterator[dict[str, Any]]:
        mixed = epoch_seed(seed, epoch) if shuffle else None
        source = self._source
        if self._per_epoch_dataset is not None and mixed is not None:
            source = self._per_epoch_dataset(mixed)
        # Whole blocks, copied out of the object store on arrival, then the same windowed
        # shuffle as the local stream. (Ray's own local_shuffle_buffer keeps its window as
        # pinned object-store blocks, which spilled with a store budget a few windows large.)
        blocks = source.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=self.prefetch_blocks)
        owned = (shuffle_rows.detach(block) for block in blocks)
        window_rows = max(batch_size, self.shuffle_buffer_rows or 0)
        rng = np.random.default_rng(mixed) if shuffle else None
        for table in shuffle_rows.batches(owned, batch_size, window_rows=window_rows, rng=rng, drop_last=drop_last):
            yield decode_torch(table, self._columns, self.float_dtype)


def train_shard_stream(
    dataset_name: str,
    table: StoreTable,
    columns: Sequence[str] | None = None,
    *,
    shard: ray.data.DataIterator | None = None,
    world_size: int | None = None,
    **kwargs: Any,
) -> RayDataStream:
    """The ``BatchStream`` of this Ray Train worker's shard of dataset ``dataset_name``.

    ``table`` describes the store table the trainer's dataset was built from (column specs and
    row count; open the store on the driver and pass the ``StoreTable``, it pickles). ``shard``
    and ``world_size`` default to ``ray.train.get_dataset_shard`` and the train context.
    """
    import ray.train

    if shard is None:
        shard = ray.train.get_dataset_shard(dataset_name)
    if world_size is None:
        world_size = ray.train.get_context().get_world_size()
    specs = table.select(columns)
    kwargs.setdefault("shuffle_buffer_rows", default_shuffle_buffer_rows(table))
    # Ray Train splits datasets with streaming_split(equal=True): total // world_size rows each.
    return RayDataStream(shard, specs, rows_per_epoch=rows_for_rank(table.num_rows, 0, world_size), **kwargs)


__all__ = [
    "RayDataStream",
    "default_block_bytes",
    "default_shuffle_buffer_rows",
    "store_dataset",
    "stored_bytes",
    "train_shard_stream",
]
