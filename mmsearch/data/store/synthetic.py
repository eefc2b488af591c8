"""Random stores of the real shape, for benchmarks and tests (never for training results).

Row ``i`` of a synthetic pairs table has ``id == i`` and latents drawn from a generator seeded
by ``(seed, chunk)``, so a reader can check which rows it got without holding the data.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mmsearch.data.store.schema import StoreManifest, scalar, vector
from mmsearch.data.store.writer import StoreWriter
from mmsearch.storage import StorageLocation

IMAGE_DIM = 1280  # EfficientNet-Lite0 pooled feature
TEXT_DIM = 384  # all-MiniLM-L6-v2 sentence embedding


def write_synthetic_pairs(
    uri: str | StorageLocation,
    rows: int,
    *,
    image_dim: int = IMAGE_DIM,
    text_dim: int = TEXT_DIM,
    dtype: str = "float16",
    seed: int = 0,
    chunk_rows: int = 8192,
    dataset: str = "synthetic",
    split: str = "train",
    **writer_kwargs: Any,
) -> StoreManifest:
    """Write a ``pairs`` table (``id`` int64, ``image`` [image_dim], ``text`` [text_dim]) in chunks."""
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    with StoreWriter(uri, dataset=dataset, split=split, **writer_kwargs) as writer:
        writer.add_table(
            "pairs",
            {
                "id": scalar("int64"),
                "image": vector(image_dim, dtype, encoder="synthetic"),
                "text": vector(text_dim, dtype, encoder="synthetic"),
            },
        )
        for chunk, start in enumerate(range(0, rows, chunk_rows)):
            n = min(chunk_rows, rows - start)
            rng = np.random.default_rng([seed, chunk])
            writer.write_batch(
                "pairs",
                {
                    "id": np.arange(start, start + n, dtype=np.int64),
                    "image": rng.standard_normal((n, image_dim), dtype=np.float32),
                    "text": rng.standard_normal((n, text_dim), dtype=np.float32),
                },
            )
    assert writer.manifest is not None
    return writer.manifest
