"""Question/text-only baseline: sees the token ids, never the image.

The text tower (:class:`~mmsearch.baselines.towers.TextTower`): MMnas's text front end, a learned
token embedding (initialised from pretrained rows when the data provides them) and a 1-layer
LSTM, then attentional pooling (AttFlat) to one vector and a LayerNorm. Per task:

* vqa: a linear classifier over the answer vocabulary -- the answer prior of each question;
* itm: one matching logit per caption -- how plausible a caption is, whatever the image;
* vg: a score per region *slot* (``Linear(-> max_regions)``, cut to the batch's regions) and one
  box delta for all regions: the most a model without the image can use is a prior over slot
  positions in the proposal list, which shuffled proposals make worthless. A score above chance
  here would mean the region order leaks the target.

Outputs follow the head contract of :mod:`mmsearch.heads` (vqa ``logits [B, A]``, itm ``logits
[B]``, vg ``scores [B, N]`` + ``box_deltas [B, N, 4]``), so the real objectives and metrics apply.
"""
from __future__ import annotations

from torch import Tensor, nn

from mmsearch.baselines.sizes import DataSizes, Widths
from mmsearch.baselines.towers import TextTower
from mmsearch.batch import MultimodalBatch
from mmsearch.heads.fusion import padding_fill_value


class TextOnlyBaseline(nn.Module):
    """``forward(batch) -> head outputs`` from ``batch.text_ids`` / ``text_mask`` alone."""

    modality = "text"

    def __init__(self, sizes: DataSizes, widths: Widths = Widths()) -> None:
        super().__init__()
        self.task = sizes.task
        pooled = 2 * widths.hidden
        self.text = TextTower(sizes, widths)
        outputs = {"vqa": sizes.num_answers, "itm": 1, "vg": sizes.max_regions}[self.task]
        self.out = nn.Linear(pooled, outputs)
        self.box = nn.Linear(pooled, 4) if self.task == "vg" else None

    def forward(self, batch: MultimodalBatch) -> dict[str, Tensor]:
        if batch.text_ids is None:
            raise ValueError("the text-only baseline needs batch.text_ids (data.text_input='tokens')")
        text = self.text(batch)
        logits = self.out(text)
        if self.task == "vqa":
            return {"logits": logits}
        if self.task == "itm":
            return {"logits": logits.squeeze(-1)}
        return self._regions(logits, text, batch)

    def _regions(self, slot_scores: Tensor, text: Tensor, batch: MultimodalBatch) -> dict[str, Tensor]:
        if batch.region_mask is None:
            raise ValueError("vg needs batch.region_mask to know how many regions each image has")
        b, n = batch.region_mask.shape
        if n > slot_scores.shape[1]:
            raise ValueError(f"the batch has {n} region slots but the model was built for max_regions={slot_scores.shape[1]}")
        padding = batch.region_mask
        scores = slot_scores[:, :n].masked_fill(padding, padding_fill_value(slot_scores.dtype))
        deltas = self.box(text).unsqueeze(1).expand(b, n, 4).masked_fill(padding.unsqueeze(-1), 0.0)
        return {"scores": scores, "box_deltas": deltas}
