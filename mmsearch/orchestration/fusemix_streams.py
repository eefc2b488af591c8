"""The Ray Data stream factory of the FuseMix recipe: trials stream the shared latent store.

``train_fusemix`` never imports Ray; with ``data.backend: ray`` it needs a stream factory
injected. :func:`ray_stream_factory` opens a split's latent store (local, NFS or S3; the
manifest and the expected columns are checked at open) and returns a
:class:`~mmsearch.orchestration.ray_data.RayDataStream` over it: every epoch is a fresh Ray Data
read of the manifest's shards, with the shard order and the heap-side shuffle window drawn from
``(seed, epoch)`` only, so a resumed trial sees the batches an uninterrupted one would.

A split whose stored bytes fit in one shuffle window (``DEFAULT_SHUFFLE_WINDOW_BYTES``, 64 MiB)
is read with the plain-pyarrow :class:`~mmsearch.data.store.LocalStoreStream` instead: streaming
it through Ray Data would hold the whole table in the heap-side window anyway, and each Ray Data
execution (one per split per epoch) has a fixed cost of several seconds on a 2-core node (about
10 s to read 40 rows, measured with Ray 2.60: its read and list tasks, scheduled and started like
any task), while the embedded scenes' FuseMix epochs compute in one or two. Such a trial's memory
stays bounded by the same 64 MiB. The choice depends only on the store, so a resumed trial reads
the way it did before.

Many trials read the same store this way at once. Each one streams blocks of at most
``target_block_bytes`` through the object store and copies them out as they arrive; nothing is
put in the object store for the lifetime of a trial (no ``tune.with_parameters`` copy of the
data per trial, ray-project/ray#41575), so memory stays bounded however many trials run.
"""
from __future__ import annotations

from typing import Any

from mmsearch.data.store import LocalStoreStream, open_store
from mmsearch.orchestration.ray_data import DEFAULT_SHUFFLE_WINDOW_BYTES, RayDataStream, stored_bytes
from mmsearch.recipes.fusemix.data import BatchStream, FuseMixDataError, StreamFactory
from mmsearch.recipes.fusemix.config import FuseMixDataConfig

_STORE_KEY = {"train": "store", "val": "val_store", "test": "test_store"}


def store_columns(data: FuseMixDataConfig) -> list[str]:
    """The columns a FuseMix run reads: the two latents and, when set, the group ids."""
    return [data.x_column, data.y_column] + ([data.group_column] if data.group_column else [])


def ray_stream_factory(*, target_block_bytes: int | None = None, local_up_to_bytes: int = DEFAULT_SHUFFLE_WINDOW_BYTES,
                       **stream_kwargs: Any) -> StreamFactory:
    """A ``StreamFactory`` whose streams read the split's store through Ray Data.

    ``target_block_bytes`` caps the blocks in the object store (default: 1/32 of the store, at
    most 16 MiB); ``stream_kwargs`` go to :meth:`RayDataStream.from_store` (for instance
    ``shuffle_buffer_rows``, ``prefetch_blocks``). A split of at most ``local_up_to_bytes``
    stored bytes is read without Ray Data (module docstring); 0 sends every split through it.
    """

    def factory(data: FuseMixDataConfig, split: str, rank: int, world_size: int) -> BatchStream:
        if world_size != 1:
            raise FuseMixDataError(f"the Ray Data stream of a FuseMix trial serves one worker, got world_size={world_size}")
        uri = data.store_uri(split)
        if not uri:
            raise FuseMixDataError(f"no store configured for the {split!r} split (data.{_STORE_KEY[split]} is empty)")
        columns = store_columns(data)
        store = open_store(uri, expect={data.table: dict.fromkeys(columns)})  # names a missing column
        table = store.table(data.table)
        if stored_bytes(table) <= local_up_to_bytes:
            return LocalStoreStream(table, columns)
        return RayDataStream.from_store(table, columns=columns,
                                        target_block_bytes=target_block_bytes, **stream_kwargs)

    return factory


__all__ = ["ray_stream_factory", "store_columns"]
