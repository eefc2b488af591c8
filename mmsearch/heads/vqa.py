"""VQA: fused reduction of both streams -> logits over the answer vocabulary.

Targets: ``batch.targets["answer_scores"]`` ``[B, A]`` soft scores in [0, 1] (VQA-v2: 0, 0.3,
0.6, 0.9, 1.0). Meta read at evaluation: ``answer_type`` and ``family`` (lists of str, optional).
With ``head.grounding_weight > 0`` the loss also pulls the region reduction's attention onto the
question's referents (``targets["referent_boxes"]``, :mod:`mmsearch.heads.vqa_grounding`);
wherever a batch has referents, training and evaluation report ``vqa_pointing``: the share (%) of
questions whose most attended region covers a referent, supervised or not.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsearch.batch import MultimodalBatch
from mmsearch.heads.config import VQAHeadConfig
from mmsearch.heads.fusion import FusedReduction
from mmsearch.heads import vqa_grounding as grounding
from mmsearch.heads.objective import RunFn, check_finite, require_output, require_target, to_floats
from mmsearch.metrics.vqa import VQAAccuracy, vqa_sample_scores

TARGET_KEY = "answer_scores"


class VQAHead(nn.Module):
    """Outputs ``{"logits": [B, num_answers], "region_attention": [B, N]}`` (the region reduction's
    attention logits, first glimpse; very negative at padding)."""

    def __init__(self, cfg: VQAHeadConfig, hidden_size: int, layer_norm: str = "torch") -> None:
        super().__init__()
        if cfg.num_answers is None:
            raise ValueError("VQAHeadConfig.num_answers is not set; set it to the size of the answer vocabulary")
        out_size = cfg.out_size(hidden_size)
        self.num_answers = cfg.num_answers
        self.fusion = FusedReduction(hidden_size, out_size, cfg.flat_mlp_size, cfg.flat_glimpses, cfg.dropout, layer_norm)
        self.classifier = nn.Linear(out_size, cfg.num_answers)

    def forward(self, text: Tensor, text_mask: Tensor, regions: Tensor, region_mask: Tensor) -> dict[str, Tensor]:
        text_vector, region_vector, attention = self.fusion.reduce(text, text_mask, regions, region_mask)
        logits = self.classifier(self.fusion.norm(text_vector + region_vector))
        return {"logits": logits, grounding.OUTPUT_KEY: attention[..., 0]}


def answer_scores_for(logits: Tensor, batch: MultimodalBatch) -> Tensor:
    """The batch's soft scores, checked against the logits' answer count."""
    scores = require_target(batch, TARGET_KEY, "vqa", "[B, num_answers] soft scores in [0, 1]")
    if scores.shape != logits.shape:
        raise ValueError(
            f"vqa: answer_scores has shape {tuple(scores.shape)} but the head predicts {tuple(logits.shape)}; "
            f"the answer vocabulary of the data ({scores.shape[-1]} answers) and the head "
            f"(num_answers={logits.shape[-1]}) must match"
        )
    return scores


def vqa_loss(logits: Tensor, answer_scores: Tensor, reduction: str = "sum") -> Tensor:
    """Multi-label BCE-with-logits against soft scores; "sum" over everything, "mean" per question."""
    loss = F.binary_cross_entropy_with_logits(logits, answer_scores.to(logits.dtype), reduction="sum")
    return loss if reduction == "sum" else loss / logits.shape[0]


def predict_vqa(outputs: dict[str, Tensor], batch: MultimodalBatch | None = None) -> dict[str, Tensor]:
    """``answer_index [B]`` (argmax) and its probability ``answer_prob [B]`` (sigmoid)."""
    logits = require_output(outputs, "logits", "vqa")
    best, index = logits.max(dim=1)
    return {"answer_index": index, "answer_prob": torch.sigmoid(best)}


class VQAObjective:
    def __init__(self, cfg: VQAHeadConfig) -> None:
        self.cfg = cfg

    def prepare(self, run: RunFn, batch: MultimodalBatch, epoch: int = 0) -> MultimodalBatch:
        return batch  # one forward on the batch as it is

    def loss(self, run: RunFn, batch: MultimodalBatch, epoch: int = 0) -> tuple[Tensor, dict[str, float]]:
        return self.loss_from_outputs(run(batch), batch)

    def loss_from_outputs(self, outputs: dict[str, Tensor], batch: MultimodalBatch) -> tuple[Tensor, dict[str, float]]:
        logits = require_output(outputs, "logits", "vqa")
        scores = answer_scores_for(logits, batch)
        check_finite("vqa answer_scores", scores)
        loss = vqa_loss(logits, scores, self.cfg.reduction)
        logs = {"vqa_acc": 100.0 * vqa_sample_scores(logits.detach().argmax(dim=1), scores).float().mean()}
        weight = self.cfg.grounding_weight
        if weight > 0 or (grounding.has_referents(batch) and grounding.OUTPUT_KEY in outputs):
            attention, targets = grounding.batch_targets(outputs, batch, weight, self.cfg.grounding_iou)
            hits = grounding.pointing_hits(attention.detach(), targets)
            if len(hits):
                logs["vqa_pointing"] = 100.0 * hits.float().mean()
            if weight > 0:
                term = grounding.grounding_loss(attention, targets)
                term = term if self.cfg.reduction == "sum" else term / logits.shape[0]
                logs["vqa_grounding"] = term.detach() / max(int(targets.has_positive.sum()), 1)  # KL per question
                loss = loss + weight * term
        return loss, to_floats({"loss": loss, **logs})


@torch.no_grad()
def evaluate_vqa(cfg: VQAHeadConfig, run: RunFn, batches: Iterable[MultimodalBatch]) -> dict[str, float]:
    """Soft VQA accuracy overall, per answer type and per question family (see VQAAccuracy)."""
    accuracy = VQAAccuracy()
    hits, asked = 0, 0
    for batch in batches:
        outputs = run(batch)
        logits = require_output(outputs, "logits", "vqa")
        accuracy.update(
            predict_vqa({"logits": logits})["answer_index"],
            answer_scores_for(logits, batch),
            batch.meta.get("answer_type"),
            batch.meta.get("family"),
        )
        if grounding.has_referents(batch) and grounding.OUTPUT_KEY in outputs:
            found = grounding.pointing_hits(*grounding.batch_targets(outputs, batch, cfg.grounding_weight, cfg.grounding_iou))
            hits, asked = hits + int(found.sum()), asked + len(found)
    metrics = accuracy.compute()
    if asked:
        metrics["vqa_pointing"] = 100.0 * hits / asked
    return metrics


__all__ = ["TARGET_KEY", "VQAHead", "VQAObjective", "evaluate_vqa", "predict_vqa", "vqa_loss"]
