"""The unimodal towers the baselines share, so that they see each modality through the same layers.

* :class:`TextTower`: MMnas's text front end -- a learned token embedding (initialised from
  pretrained rows when the data provides them) and a 1-layer LSTM -- then attentional pooling
  (AttFlat) to one ``2H`` vector and a LayerNorm.
* :class:`ImageTower`: per region ``Linear(Dv -> H)`` of its feature plus ``Linear(5 -> H)`` of its
  normalised box (:class:`mmsearch.ops.RegionEmbedding`), ``ReLU -> Linear(H -> H) -> ReLU``; then
  AttFlat over the regions and a LayerNorm give the ``2H`` image vector.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mmsearch.baselines.sizes import DataSizes, Widths
from mmsearch.batch import MultimodalBatch
from mmsearch.heads.fusion import AttFlat
from mmsearch.ops import RegionEmbedding, TokenLSTMEmbedding


class TextTower(nn.Module):
    """``forward(batch) -> [B, 2H]`` from ``batch.text_ids`` and ``text_mask``."""

    def __init__(self, sizes: DataSizes, widths: Widths) -> None:
        super().__init__()
        h, pooled = widths.hidden, 2 * widths.hidden
        init = None if sizes.embedding_init is None else torch.as_tensor(sizes.embedding_init, dtype=torch.float32)
        self.embed = TokenLSTMEmbedding(sizes.vocab_size, sizes.word_dim, h, init)
        self.pool = AttFlat(h, pooled, widths.flat_mlp, 1, widths.dropout)
        self.norm = nn.LayerNorm(pooled)

    def forward(self, batch: MultimodalBatch) -> Tensor:
        assert batch.text_ids is not None  # the baseline checked it, with its own message
        return self.norm(self.pool(self.embed(batch.text_ids), batch.text_mask))


class ImageTower(nn.Module):
    """``forward(batch) -> (regions [B, N, H], image [B, 2H])`` from the region features, boxes,
    mask and image sizes."""

    def __init__(self, sizes: DataSizes, widths: Widths) -> None:
        super().__init__()
        h, pooled = widths.hidden, 2 * widths.hidden
        self.embed = RegionEmbedding(sizes.region_dim, h, box_feature=True)
        self.mlp = nn.Sequential(nn.ReLU(), nn.Dropout(widths.dropout), nn.Linear(h, h), nn.ReLU())
        self.pool = AttFlat(h, pooled, widths.flat_mlp, 1, widths.dropout)
        self.norm = nn.LayerNorm(pooled)

    def forward(self, batch: MultimodalBatch) -> tuple[Tensor, Tensor]:
        assert batch.region_feats is not None and batch.region_boxes is not None and batch.region_mask is not None
        regions = self.mlp(self.embed(batch.region_feats, batch.region_boxes, batch.image_size))
        return regions, self.norm(self.pool(regions, batch.region_mask))
