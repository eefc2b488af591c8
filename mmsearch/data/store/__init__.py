"""Latent store: Parquet shards + a JSON manifest written last (see ``schema.py`` for the layout).

Write with :class:`StoreWriter`, open (and check) with :func:`open_store`, stream epochs with
:class:`LocalStoreStream` (or ``mmsearch.orchestration.ray_data.RayDataStream`` under Ray).
"""
from mmsearch.data.store.decode import decode_numpy, decode_torch
from mmsearch.data.store.plan import epoch_seed
from mmsearch.data.store.reader import Store, StoreTable, open_store
from mmsearch.data.store.schema import (
    MANIFEST_NAME,
    ColumnSpec,
    ShardInfo,
    StoreError,
    StoreManifest,
    TableManifest,
    list_of,
    scalar,
    sequence,
    vector,
)
from mmsearch.data.store.stream import BatchStream, LocalStoreStream
from mmsearch.data.store.writer import StoreWriter

__all__ = [
    "MANIFEST_NAME",
    "BatchStream",
    "ColumnSpec",
    "LocalStoreStream",
    "ShardInfo",
    "Store",
    "StoreError",
    "StoreManifest",
    "StoreTable",
    "StoreWriter",
    "TableManifest",
    "decode_numpy",
    "decode_torch",
    "epoch_seed",
    "list_of",
    "open_store",
    "scalar",
    "sequence",
    "vector",
]
