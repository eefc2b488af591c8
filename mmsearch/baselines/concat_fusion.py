"""Feature-concatenation baseline (the multimodal-fusion introduction's "feature concatenation"):
each modality is encoded and pooled on its own, the pooled vectors are concatenated and an MLP
predicts. The modalities meet exactly once, after pooling: no token of one ever attends to the other.

* text: token embedding + LSTM + attentional pooling (AttFlat) + LayerNorm (``text_only``'s
  :class:`~mmsearch.baselines.towers.TextTower`);
* image: region feature + normalised box, ``ReLU -> Linear -> ReLU``, AttFlat + LayerNorm
  (``image_only``'s :class:`~mmsearch.baselines.towers.ImageTower`);
* fusion: ``MLP([text ; image]) = Linear(4H -> 2H) -> ReLU -> Dropout`` then per task
  vqa ``Linear(2H -> answers)`` logits, itm ``Linear(2H -> 1)`` one matching logit.
* vg scores every region, so the image cannot be pooled away: each region's vector is
  concatenated with the pooled text (and the pooled image) and the same MLP gives its score and
  box deltas -- concatenation fusion at the region level, still without attention across modalities.

Outputs follow the head contract of :mod:`mmsearch.heads`; trains with the real objectives.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mmsearch.baselines.sizes import DataSizes, Widths
from mmsearch.baselines.towers import ImageTower, TextTower
from mmsearch.batch import MultimodalBatch
from mmsearch.heads.vg import region_outputs


class ConcatFusionBaseline(nn.Module):
    """``forward(batch) -> head outputs`` from concatenated pooled text and image vectors."""

    modality = "text+image"

    def __init__(self, sizes: DataSizes, widths: Widths = Widths()) -> None:
        super().__init__()
        self.task = sizes.task
        h, pooled = widths.hidden, 2 * widths.hidden
        self.text = TextTower(sizes, widths)
        self.image = ImageTower(sizes, widths)
        fused_in = 2 * pooled
        if self.task == "vg":
            self.region_proj = nn.Linear(h, pooled)
            fused_in = 3 * pooled  # [region ; text ; image]
        self.mlp = nn.Sequential(nn.Linear(fused_in, pooled), nn.ReLU(), nn.Dropout(widths.dropout))
        if self.task == "vg":
            self.score = nn.Linear(pooled, 1)
            self.box = nn.Linear(pooled, 4)
        else:
            self.out = nn.Linear(pooled, sizes.num_answers if self.task == "vqa" else 1)

    def forward(self, batch: MultimodalBatch) -> dict[str, Tensor]:
        feats, boxes, mask = batch.region_feats, batch.region_boxes, batch.region_mask
        if batch.text_ids is None or feats is None or boxes is None or mask is None or batch.image_size is None:
            raise ValueError("the concatenation baseline needs text_ids and region_feats, region_boxes, region_mask, image_size")
        text = self.text(batch)
        regions, image = self.image(batch)
        if self.task != "vg":
            logits = self.out(self.mlp(torch.cat((text, image), dim=-1)))
            return {"logits": logits if self.task == "vqa" else logits.squeeze(-1)}
        n = regions.shape[1]
        per_region = torch.cat((self.region_proj(regions), text[:, None].expand(-1, n, -1), image[:, None].expand(-1, n, -1)), -1)
        return region_outputs(self.mlp(per_region), mask, self.score, self.box)
