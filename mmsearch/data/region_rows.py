"""Region features read per batch from a store's ``regions`` table (``data.regions: stream``).

``StoreTaskData`` with ``regions: memory`` holds a split's whole region bank (features and boxes)
as one :class:`~mmsearch.data.collate.Ragged`. :class:`StreamedRegions` keeps only what locates
each image's row (:class:`~mmsearch.data.table_rows.StreamedRows`) plus ``image_id`` /
``image_h`` / ``image_w`` (a few bytes per image) and, for each batch, reads the row groups
holding the batch's images (only the ``features`` and ``boxes`` columns), takes those rows, and
returns them as a batch-local ``Ragged``. Collating from it gives exactly the in-memory batch
(same rows, same padding, same dtype conversion).

Memory: the batch's own rows, plus a least-recently-used cache of decoded row groups (a
:class:`~mmsearch.data.table_rows.RowGroupCache`, shared with the data set's other streamed
tables). Cost: a whole row group is read for any row of it, so random sample order reads about
one row group per distinct image of a batch (less when the cache holds the group); stores
written for streaming want about one image per row group (``StoreWriter(row_group_bytes=...)``,
with more row groups per file: ``row_groups_per_shard``).
"""
from __future__ import annotations

import logging

import numpy as np

from mmsearch.data.collate import Ragged
from mmsearch.data.store import StoreError, StoreTable
from mmsearch.data.table_rows import RowGroupCache, StreamedRows

COLUMNS = ("features", "boxes")
# Above this many images per row group, a batch in random order decodes about that many times the
# rows it uses (measured: 11 images a group read 10x and made the stream the bottleneck of a
# 100 ms step; one image a group kept up, bench/README "Search-trial data streamed").
DENSE_ROW_GROUP_IMAGES = 4
LOG = logging.getLogger(__name__)


class StreamedRegions(StreamedRows):
    """A split's region bank read from the store on demand (see the module docstring)."""

    def __init__(self, table: StoreTable, cache: RowGroupCache | int) -> None:
        super().__init__(table, COLUMNS, cache)
        small = table.read_arrow(["image_id", "image_h", "image_w"])  # column projection: no features read
        self.image_ids = np.asarray(small.column("image_id").to_pylist(), dtype=object)
        self.sizes = np.stack([small.column("image_h").to_numpy(), small.column("image_w").to_numpy()], axis=1)
        if len(self.row_group) != len(self.image_ids):
            raise StoreError(f"{table.uri}: table 'regions' lists {len(self.row_group)} rows in its row groups "
                             f"but {len(self.image_ids)} image ids were read")
        self.images_per_group = len(self.image_ids) / max(1, self.num_groups)
        if self.images_per_group > DENSE_ROW_GROUP_IMAGES:
            LOG.warning("%s: 'regions' holds %.0f images per row group; streamed in random order, each batch decodes "
                        "about that many times the rows it uses. For data.regions: stream write the store with one image "
                        "per row group (precompute layout.row_group_kib=128 layout.row_groups_per_shard=64).",
                        table.uri, self.images_per_group)

    def batch(self, image_rows: np.ndarray) -> tuple[Ragged, Ragged, np.ndarray, np.ndarray]:
        """``(features, boxes, local_rows, sizes)`` of the images at ``image_rows``: record
        ``local_rows[i]`` of the returned ``Ragged``s is image ``image_rows[i]``'s."""
        plan = self.plan(image_rows)
        columns = self.assemble(plan, self.read(plan))
        return columns["features"], columns["boxes"], plan.local, self.sizes[plan.rows]


__all__ = ["COLUMNS", "StreamedRegions"]
