"""Task heads (VQA, ITM, VG), their objectives, predictions and evaluation.

Every head is an ``nn.Module`` with one signature, so any network can end in any head::

    head(text [B, T, H], text_mask [B, T], regions [B, N, H], region_mask [B, N]) -> dict[str, Tensor]

(masks are bool, True = padding; ``text`` is the encoder output, ``regions`` the decoder output).

Each head is described by a :class:`HeadEntry` (config class, module, objective, evaluation,
prediction); the task modules of ``mmsearch.tasks`` register them in the task registry ``TASKS``
and give the calls recipes use (``build_head``, ``make_objective``, ``evaluate``, ``predict``),
where ``run(batch) -> head outputs`` is the network's forward. Outputs and targets per head:

=====  =====================================  ==========================================  ==================
task   head outputs                           batch.targets read                          primary metric
=====  =====================================  ==========================================  ==================
vqa    logits [B, A]                          answer_scores [B, A]                        vqa_acc
itm    logits [B]                             match [B] (optional), neg_text_* (optional) itm_rsum
vg     scores [B, N], box_deltas [B, N, 4]    gt_box [B, 4] (+ region_boxes, image_size)  vg_acc
=====  =====================================  ==========================================  ==================

Meta read (lists, one entry per row, all optional): ``answer_type`` and ``family`` (VQA
evaluation, per-type and per-family accuracy), ``family`` (VG evaluation), ``image_id`` (ITM:
which rows show the same image; required for ITM evaluation). Metrics are in percent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from torch import Tensor, nn

from mmsearch.batch import MultimodalBatch
from mmsearch.heads.config import ITMHeadConfig, VGHeadConfig, VQAHeadConfig
from mmsearch.heads.fusion import AttFlat, FusedReduction
from mmsearch.heads.itm import ITMHead, ITMObjective, evaluate_itm, predict_itm, score_all_pairs
from mmsearch.heads.objective import Objective, RunFn
from mmsearch.heads.vg import VGHead, VGObjective, evaluate_vg, grounding_targets, predict_vg
from mmsearch.heads.vqa import VQAHead, VQAObjective, evaluate_vqa, predict_vqa


@dataclass(frozen=True)
class HeadEntry:
    """Everything about one head: its config class, head module, objective, evaluation and prediction."""

    config: type  # the task's config dataclass
    head: Callable[..., nn.Module]  # (cfg, hidden_size[, layer_norm="torch" | "mmnas"]) -> head module
    objective: Callable[[Any], Objective]  # cfg -> objective
    evaluate: Callable[[Any, RunFn, Iterable[MultimodalBatch]], dict[str, float]]  # (cfg, run, batches)
    predict: Callable[[Any, dict[str, Tensor], MultimodalBatch], dict[str, Tensor]]  # (cfg, outputs, batch)


__all__ = [
    "AttFlat",
    "FusedReduction",
    "HeadEntry",
    "ITMHead",
    "ITMHeadConfig",
    "ITMObjective",
    "Objective",
    "RunFn",
    "VGHead",
    "VGHeadConfig",
    "VGObjective",
    "VQAHead",
    "VQAHeadConfig",
    "VQAObjective",
    "evaluate_itm",
    "evaluate_vg",
    "evaluate_vqa",
    "grounding_targets",
    "predict_itm",
    "predict_vg",
    "predict_vqa",
    "score_all_pairs",
]
