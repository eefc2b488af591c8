"""Task heads (VQA, ITM, VG), their objectives, predictions and evaluation, by task name.

Every head is an ``nn.Module`` with one signature, so any network can end in any head::

    head(text [B, T, H], text_mask [B, T], regions [B, N, H], region_mask [B, N]) -> dict[str, Tensor]

(masks are bool, True = padding; ``text`` is the encoder output, ``regions`` the decoder output).

A recipe uses a task through four calls, all taking a head config or a task name::

    head = build_head(cfg, hidden_size)            # nn.Module
    objective = make_objective(cfg)                # objective.loss(run, batch, epoch) -> (loss, logs)
    metrics = evaluate(cfg, run, batches)          # dict[str, float], primary metric: PRIMARY_METRIC[task]
    prediction = predict(cfg, outputs, batch)      # tensors a prediction file needs

where ``run(batch) -> head outputs`` is the network's forward. Outputs and targets per task:

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
from mmsearch.config import replace, validate_config
from mmsearch.heads.config import HeadConfig, ITMHeadConfig, VGHeadConfig, VQAHeadConfig
from mmsearch.heads.fusion import AttFlat, FusedReduction
from mmsearch.heads.itm import ITMHead, ITMObjective, evaluate_itm, predict_itm, score_all_pairs
from mmsearch.heads.objective import Objective, RunFn
from mmsearch.heads.vg import VGHead, VGObjective, evaluate_vg, grounding_targets, predict_vg
from mmsearch.heads.vqa import VQAHead, VQAObjective, evaluate_vqa, predict_vqa
from mmsearch.registry import Registry


@dataclass(frozen=True)
class HeadEntry:
    """Everything about one task: its config class, head module, objective and evaluation."""

    config: type  # the task's config dataclass
    head: Callable[[Any, int], nn.Module]  # (cfg, hidden_size) -> head module
    objective: Callable[[Any], Objective]  # cfg -> objective
    evaluate: Callable[[Any, RunFn, Iterable[MultimodalBatch]], dict[str, float]]  # (cfg, run, batches)
    predict: Callable[[Any, dict[str, Tensor], MultimodalBatch], dict[str, Tensor]]  # (cfg, outputs, batch)
    primary_metric: str  # higher is better


HEADS: Registry[HeadEntry] = Registry("head")
HEADS.add(
    "vqa",
    HeadEntry(VQAHeadConfig, VQAHead, VQAObjective, evaluate_vqa, lambda cfg, out, batch: predict_vqa(out, batch), "vqa_acc"),
)
HEADS.add(
    "itm",
    HeadEntry(ITMHeadConfig, ITMHead, ITMObjective, evaluate_itm, lambda cfg, out, batch: predict_itm(out, batch), "itm_rsum"),
)
HEADS.add(
    "vg",
    HeadEntry(VGHeadConfig, VGHead, VGObjective, evaluate_vg, lambda cfg, out, batch: predict_vg(out, batch, cfg.delta_stds), "vg_acc"),
    aliases=("vgd", "grounding"),
)

PRIMARY_METRIC = {name: HEADS.get(name).primary_metric for name in HEADS.names()}


def head_config(task_or_cfg: str | HeadConfig, **overrides: Any) -> HeadConfig:
    """A validated head config: the defaults of task ``name`` or a given config, with overrides."""
    if isinstance(task_or_cfg, str):
        entry = HEADS.get(task_or_cfg)
        return validate_config(entry.config, overrides, f"{HEADS.canonical(task_or_cfg)} head")
    if not isinstance(task_or_cfg, (VQAHeadConfig, ITMHeadConfig, VGHeadConfig)):
        raise TypeError(f"expected a task name or a head config, got {type(task_or_cfg).__name__}")
    return replace(task_or_cfg, **overrides) if overrides else task_or_cfg


def _entry(cfg: HeadConfig) -> HeadEntry:
    return HEADS.get(cfg.task)


def build_head(task_or_cfg: str | HeadConfig, hidden_size: int, **overrides: Any) -> nn.Module:
    """The head module for a network of width ``hidden_size``, e.g. ``build_head("vqa", 512, num_answers=3129)``."""
    if hidden_size <= 0:
        raise ValueError(f"hidden_size must be positive, got {hidden_size}")
    cfg = head_config(task_or_cfg, **overrides)
    return _entry(cfg).head(cfg, hidden_size)


def make_objective(task_or_cfg: str | HeadConfig, **overrides: Any) -> Objective:
    cfg = head_config(task_or_cfg, **overrides)
    return _entry(cfg).objective(cfg)


def evaluate(task_or_cfg: str | HeadConfig, run: RunFn, batches: Iterable[MultimodalBatch]) -> dict[str, float]:
    """Metrics over an evaluation set, run without grad. Put the network in eval mode first."""
    cfg = head_config(task_or_cfg)
    return _entry(cfg).evaluate(cfg, run, batches)


def predict(task_or_cfg: str | HeadConfig, outputs: dict[str, Tensor], batch: MultimodalBatch) -> dict[str, Tensor]:
    cfg = head_config(task_or_cfg)
    return _entry(cfg).predict(cfg, outputs, batch)


__all__ = [
    "HEADS",
    "PRIMARY_METRIC",
    "AttFlat",
    "FusedReduction",
    "HeadConfig",
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
    "build_head",
    "evaluate",
    "grounding_targets",
    "head_config",
    "make_objective",
    "predict",
    "score_all_pairs",
]
