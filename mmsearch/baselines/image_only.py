"""Image-only baseline: sees the regions (features and boxes), never the text.

The image tower (:class:`~mmsearch.baselines.towers.ImageTower`): each region ``Linear(Dv -> H)``
of its feature plus ``Linear(5 -> H)`` of its normalised box, then ``ReLU -> Linear(H -> H) ->
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
from mmsearch.baselines.towers import ImageTower
from mmsearch.batch import MultimodalBatch
from mmsearch.heads.vg import region_outputs


class ImageOnlyBaseline(nn.Module):
    """``forward(batch) -> head outputs`` from ``region_feats``, ``region_boxes``, ``region_mask``
    and ``image_size`` alone."""

    modality = "image"

    def __init__(self, sizes: DataSizes, widths: Widths = Widths()) -> None:
        super().__init__()
        self.task = sizes.task
        h, pooled = widths.hidden, 2 * widths.hidden
        self.image = ImageTower(sizes, widths)
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
        regions, image = self.image(batch)
        if self.task == "vqa":
            return {"logits": self.out(image)}
        if self.task == "itm":
            return {"logits": self.out(image).squeeze(-1)}
        fused = self.region_norm(self.region_proj(regions) + image.unsqueeze(1))
        return region_outputs(fused, mask, self.score, self.box)
