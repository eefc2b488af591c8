"""Head configs, one per task, told apart by their ``task`` field.

A recipe config holds ``head: HeadConfig`` (``mmsearch.tasks``); YAML picks the task with
``task: <name>`` and the task registry picks the class. The
network's hidden size is not part of a head config: the network passes its own, so the two
cannot disagree.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from mmsearch.config import config_dataclass
from mmsearch.metrics.boxes import DEFAULT_DELTA_STDS

Reduction = Literal["sum", "mean"]


@config_dataclass
class _ReductionConfig:
    """Fields shared by every head: the attentional reduction (AttFlat) sizes and dropout."""

    flat_mlp_size: int = Field(default=512, gt=0)  # AttFlat scoring MLP width (MMnas: 512)
    flat_glimpses: int = Field(default=1, gt=0)  # attention maps per stream (MMnas: 1)
    flat_out_size: Optional[int] = Field(default=None, gt=0)  # fused width; None = 2 * hidden (MMnas)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)

    def out_size(self, hidden_size: int) -> int:
        return self.flat_out_size or 2 * hidden_size


@config_dataclass
class VQAHeadConfig(_ReductionConfig):
    task: Literal["vqa"] = "vqa"
    # Size of the answer vocabulary; set it from the data (the recipe fills it in).
    num_answers: Optional[int] = Field(default=None, gt=0)
    # "sum": summed over answers and questions, as MMnas (its lr 1.2e-4 and clip 1.0 were
    # tuned with it; Adam itself is invariant to the scale). "mean": summed over answers,
    # averaged over questions, so loss values compare across batch sizes.
    reduction: Reduction = "sum"
    # Grounding supervision: weight of a KL term pulling the region reduction's attention (its
    # first glimpse) onto the proposals that cover the question's referents (IoU >= grounding_iou
    # with a referent box; the data's ``referent_boxes``). 0 = answers only (MMnas). Questions
    # without a covered referent add nothing. The term follows ``reduction`` (summed or averaged
    # over questions), as the answer loss does.
    grounding_weight: float = Field(default=0.0, ge=0.0)
    grounding_iou: float = Field(default=0.5, gt=0.0, le=1.0)


@config_dataclass
class ITMHeadConfig(_ReductionConfig):
    task: Literal["itm"] = "itm"
    reduction: Reduction = "sum"  # "sum" over pairs as MMnas; "mean" divides by the positives
    # "sum": MMnas's head (linear on the fused sum); "sum_bilinear": plus a bilinear match score of
    # the two reduced streams (see ITMHead: without it, nothing learned ITM on the embedded scenes).
    fusion: Literal["sum", "sum_bilinear"] = "sum_bilinear"
    # In-batch candidates scored (without grad) per anchor to pick the hardest negative;
    # 1 = a random in-batch negative. Each candidate costs one extra forward row per anchor
    # and direction.
    num_candidates: int = Field(default=4, ge=1)
    # Epochs (0-based) before this one use random negatives (MMnas search: 10, retraining: 0).
    hard_negatives_from_epoch: int = Field(default=0, ge=0)
    # Add a term for dataset-provided hard negative captions (targets "neg_text_*") when present.
    use_dataset_negatives: bool = True
    eval_chunk: int = Field(default=256, gt=0)  # (image, caption) pairs per forward at evaluation
    recall_ks: tuple[int, ...] = (1, 5, 10)


@config_dataclass
class VGHeadConfig(_ReductionConfig):
    task: Literal["vg"] = "vg"
    positive_iou: float = Field(default=0.5, gt=0.0, le=1.0)  # proposals at least this close are targets
    regression_weight: float = Field(default=0.5, ge=0.0)  # weight of the smooth-L1 term (MMnas: 0.5)
    delta_stds: tuple[float, float, float, float] = DEFAULT_DELTA_STDS
    accuracy_iou: float = Field(default=0.5, gt=0.0, le=1.0)  # IoU for a correct prediction


__all__ = ["ITMHeadConfig", "Reduction", "VGHeadConfig", "VQAHeadConfig"]
