"""Image-only baseline: sees the regions (features and boxes), never the text.

Each region: ``Linear(Dv -> H)`` of its feature plus ``Linear(5 -> H)`` of its normalised box
(:class:`mmsearch.ops.RegionEmbedding` with the box feature), then ``ReLU -> Linear(H -> H) ->
ReLU``; attentional pooling (AttFlat) over the regions and a LayerNorm give the image vector.
Per task:

* vqa: a linear classifier over the answer vocabulary -- one answer distribution per image,
  whatever was asked;
* itm: one matching logit per image, whatever the caption (every caption of an image, true or
  false, gets the same score);
* vg: per region ``LayerNorm(Linear(region) + image vector)`` -> a score and box deltas: an
  "objectness" and size prior learned without the expression.

Outputs follow the head contract of :mod:`mmsearch.heads`, so the real objectives and metrics apply.
"""
from __future__ import annotations

from torch import Tensor, nn

from mmsearch.baselines.sizes import DataSizes, Widths
from mmsearch.batch import MultimodalBatch
from mmsearch.heads.fusion import AttFlat, padding_fill_value
from mmsearch.ops import RegionEmbedding


class ImageOnlyBaseline(nn.Module):
    """``forward(batch) -> head outputs`` from ``region_feats``, ``region_boxes``, ``region_mask``
    and ``image_size`` alone."""

    modality = "image"

    def __init__(self, sizes: DataSizes, widths: Widths = Widths()) -> None:
        super().__init__()
        self.task = sizes.task
        h, pooled = widths.hidden, 2 * widths.hidden
        self.embed = RegionEmbedding(sizes.region_dim, h, box_feature=True)
        self.mlp = nn.Sequential(nn.ReLU(), nn.Dropout(widths.dropout), nn.Linear(h, h), nn.ReLU())
        self.pool = AttFlat(h, pooled, widths.flat_mlp, 1, widths.dropout)
        self.norm = nn.LayerNorm(pooled)
        if self.task == "vg":
            self.region_proj = nn.Linear(h, pooled)
            self.region_norm = nn.LayerNorm(pooled)
            self.score = nn.Linear(pooled, 1)
            self.box = nn.Linear(pooled, 4)
        else:
            self.out = nn.Linear(pooled, sizes.num_answers if self.task == "vqa" else 1)

    def forward(self, batch: MultimodalBatch) -> dict[str, Tensor]:
        feats, boxes, mask = batch.region_feats, batch.region_boxes, batch.region_mask
        if feats is None or boxes is None or mask is None or batch.image_size is None:
            raise ValueError("the image-only baseline needs region_feats, region_boxes, region_mask and image_size")
        regions = self.mlp(self.embed(feats, boxes, batch.image_size))
        image = self.norm(self.pool(regions, mask))
        if self.task == "vqa":
            return {"logits": self.out(image)}
        if self.task == "itm":
            return {"logits": self.out(image).squeeze(-1)}
        fused = self.region_norm(self.region_proj(regions) + image.unsqueeze(1))
        padding = mask.unsqueeze(-1)
        scores = self.score(fused).masked_fill(padding, padding_fill_value(fused.dtype)).squeeze(-1)
        return {"scores": scores, "box_deltas": self.box(fused).masked_fill(padding, 0.0)}
