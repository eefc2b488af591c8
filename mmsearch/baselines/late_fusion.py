"""Late-fusion baseline: an ensemble of the two unimodal predictors (``text_only`` and
``image_only``), combined at the score level. The modalities never meet inside a model.

Combination per task (outputs stay in the head contract, so the real losses and metrics apply):

* vqa: averaged answer probabilities. The VQA head scores every answer with a sigmoid, so
  ``p = (sigmoid(l_text) + sigmoid(l_image)) / 2`` per answer, returned as the logit
  ``log p - log(1 - p)`` (the argmax answer is the one with the highest averaged probability).
* itm: the analogous combination of the two matching probabilities,
  ``logit((sigmoid(s_text) + sigmoid(s_image)) / 2)``. Note what this can and cannot do: the text
  member scores a caption the same for every image and the image member an image the same for
  every caption, so the ensemble ranks by two priors (plausible caption, typical image); it has
  no term for whether *this* caption fits *this* image -- the weakness of late fusion for matching.
* vg: the two members' distributions over the regions are averaged,
  ``p = (softmax(s_text) + softmax(s_image)) / 2`` over the real regions, returned as the scores
  ``log p`` (the grounding loss and the argmax read them as a distribution), and the box deltas
  are the mean of the members' deltas.

Training: with ``train_and_select`` every member is trained on its own loss (the summed loss of
disjoint members: each member's gradient is exactly what training it alone gives, except that the
grad-norm clip is taken over both), as an ensemble of independently trained predictors is;
``member_losses`` marks that. Evaluation uses the combined outputs.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mmsearch.baselines.image_only import ImageOnlyBaseline
from mmsearch.baselines.sizes import DataSizes, Widths
from mmsearch.baselines.text_only import TextOnlyBaseline
from mmsearch.batch import MultimodalBatch
from mmsearch.heads.fusion import padding_fill_value

PROB_FLOOR = 1e-7  # keeps the combined logit finite when both members are certain


def mean_probability_logit(a: Tensor, b: Tensor) -> Tensor:
    """``logit((sigmoid(a) + sigmoid(b)) / 2)``, elementwise."""
    p = ((torch.sigmoid(a) + torch.sigmoid(b)) * 0.5).clamp(PROB_FLOOR, 1.0 - PROB_FLOOR)
    return torch.log(p) - torch.log1p(-p)


class LateFusionBaseline(nn.Module):
    """``forward(batch)`` -> the combined head outputs of a text-only and an image-only predictor."""

    modality = "text+image"
    member_losses = True  # train_and_select trains each member on its own loss

    def __init__(self, sizes: DataSizes, widths: Widths = Widths()) -> None:
        super().__init__()
        self.task = sizes.task
        self.text = TextOnlyBaseline(sizes, widths)
        self.image = ImageOnlyBaseline(sizes, widths)

    @property
    def members(self) -> tuple[nn.Module, nn.Module]:
        return self.text, self.image

    def forward(self, batch: MultimodalBatch) -> dict[str, Tensor]:
        t, i = self.text(batch), self.image(batch)
        if self.task in ("vqa", "itm"):
            return {"logits": mean_probability_logit(t["logits"], i["logits"])}
        padding = batch.region_mask
        assert padding is not None  # both members checked it
        p = 0.5 * (torch.softmax(t["scores"], dim=1) + torch.softmax(i["scores"], dim=1))
        scores = torch.log(p.clamp(min=PROB_FLOOR)).masked_fill(padding, padding_fill_value(p.dtype))
        return {"scores": scores, "box_deltas": 0.5 * (t["box_deltas"] + i["box_deltas"])}
