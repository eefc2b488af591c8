"""Grounding supervision for the VQA head: point the region reduction at the question's referents.

Answer-only supervision leaves the VQA head free to answer from question priors; on the embedded
scenes every architecture does (``bench/README.md``, the VQA oracle). Where the data names the
objects an answer is read from (``targets["referent_boxes"]`` ``[B, K, 4]`` pixels,
``targets["referent_mask"]`` ``[B, K]`` True at padding), the proposals covering a referent
(IoU >= ``iou`` with one of its boxes) are the regions the head's region reduction should read:
the target is their IoU-weighted distribution, and the loss is KL(target || softmax(attention
logits)), as the VG head's ranking loss. The attention logits are the region AttFlat's first
glimpse (``outputs["region_attention"]`` ``[B, N]``); no parameter is added, so a network trained
without the term is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mmsearch.batch import MultimodalBatch
from mmsearch.heads.objective import require_field, require_output
from mmsearch.metrics.boxes import box_iou

BOXES_KEY = "referent_boxes"
MASK_KEY = "referent_mask"
OUTPUT_KEY = "region_attention"


@dataclass
class ReferentTargets:
    distribution: Tensor  # [B, N] IoU-weighted positives normalised to sum 1 (0 elsewhere)
    positive: Tensor  # [B, N] bool: a real proposal with IoU >= iou against some referent
    has_positive: Tensor  # [B] bool: questions the term applies to


def has_referents(batch: MultimodalBatch) -> bool:
    return batch.targets.get(BOXES_KEY) is not None


def require_referents(batch: MultimodalBatch, weight: float) -> tuple[Tensor, Tensor]:
    """The batch's referent boxes and mask, or a clear error saying why grounding cannot run."""
    boxes, mask = batch.targets.get(BOXES_KEY), batch.targets.get(MASK_KEY)
    if boxes is None or mask is None:
        raise KeyError(
            f"vqa: head.grounding_weight is {weight} but the batch has no targets[{BOXES_KEY!r}] / [{MASK_KEY!r}]: "
            "the data set has no referent boxes (a real VQA source has none; an embedded-scenes data set written "
            "before they existed needs rebuilding). Set head.grounding_weight=0 or use a data set that has them."
        )
    if boxes.dim() != 3 or boxes.shape[-1] != 4 or mask.shape != boxes.shape[:2]:
        raise ValueError(f"vqa: referent_boxes must be [B, K, 4] with referent_mask [B, K]; got "
                         f"{tuple(boxes.shape)} and {tuple(mask.shape)}")
    return boxes, mask


def referent_targets(region_boxes: Tensor, region_mask: Tensor, referent_boxes: Tensor, referent_mask: Tensor,
                     iou: float = 0.5) -> ReferentTargets:
    """Targets from proposals ``[B, N, 4]`` (mask ``[B, N]``) and referents ``[B, K, 4]`` (mask ``[B, K]``)."""
    b, n = region_mask.shape
    if referent_boxes.shape[1] == 0:
        none = torch.zeros(b, n, dtype=torch.bool, device=region_boxes.device)
        return ReferentTargets(torch.zeros(b, n, dtype=region_boxes.dtype, device=region_boxes.device), none, none.any(dim=1))
    overlap = box_iou(region_boxes, referent_boxes.to(region_boxes.dtype))  # [B, N, K]
    overlap = overlap.masked_fill(referent_mask.unsqueeze(1), 0.0).masked_fill(region_mask.unsqueeze(-1), 0.0)
    best = overlap.max(dim=-1).values  # [B, N] each proposal's best referent
    positive = best >= iou
    weights = best * positive
    total = weights.sum(dim=1, keepdim=True)
    distribution = weights / total.clamp(min=torch.finfo(total.dtype).tiny)
    return ReferentTargets(distribution, positive, positive.any(dim=1))


def grounding_loss(attention: Tensor, targets: ReferentTargets) -> Tensor:
    """KL(target || softmax(attention)) summed over the questions that have a positive proposal."""
    log_probs = torch.log_softmax(attention, dim=1)
    target = targets.distribution.to(log_probs.dtype)
    return (torch.xlogy(target, target) - target * log_probs).sum()


def pointing_hits(attention: Tensor, targets: ReferentTargets) -> Tensor:
    """``[Q]`` bool over the questions with a positive: does the most attended region cover a referent."""
    top = attention.argmax(dim=1)
    hit = targets.positive.gather(1, top.unsqueeze(1)).squeeze(1)
    return hit[targets.has_positive]


def batch_targets(outputs: dict[str, Tensor], batch: MultimodalBatch, weight: float, iou: float) -> tuple[Tensor, ReferentTargets]:
    """The head's attention logits ``[B, N]`` and the batch's referent targets (errors name what is missing)."""
    attention = require_output(outputs, OUTPUT_KEY, "vqa")
    boxes, mask = require_referents(batch, weight)
    region_boxes = require_field(batch, "region_boxes", "vqa grounding", "[B, N, 4] pixels")
    region_mask = require_field(batch, "region_mask", "vqa grounding", "[B, N] bool, True = padding")
    if attention.shape != region_mask.shape:
        raise ValueError(f"vqa: region_attention {tuple(attention.shape)} does not match region_mask {tuple(region_mask.shape)}")
    return attention, referent_targets(region_boxes, region_mask, boxes, mask, iou)


__all__ = [
    "BOXES_KEY",
    "MASK_KEY",
    "OUTPUT_KEY",
    "ReferentTargets",
    "batch_targets",
    "grounding_loss",
    "has_referents",
    "pointing_hits",
    "referent_targets",
    "require_referents",
]
