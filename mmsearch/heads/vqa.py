"""VQA: fused reduction of both streams -> logits over the answer vocabulary.

Targets: ``batch.targets["answer_scores"]`` ``[B, A]`` soft scores in [0, 1] (VQA-v2: 0, 0.3,
0.6, 0.9, 1.0). Meta read at evaluation: ``answer_type`` and ``family`` (lists of str, optional).
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsearch.batch import MultimodalBatch
from mmsearch.heads.config import VQAHeadConfig
from mmsearch.heads.fusion import FusedReduction
from mmsearch.heads.objective import RunFn, check_finite, require_output, require_target, to_floats
from mmsearch.metrics.vqa import VQAAccuracy, vqa_sample_scores

TARGET_KEY = "answer_scores"


class VQAHead(nn.Module):
    """Outputs ``{"logits": [B, num_answers]}``."""

    def __init__(self, cfg: VQAHeadConfig, hidden_size: int, layer_norm: str = "torch") -> None:
        super().__init__()
        if cfg.num_answers is None:
            raise ValueError("VQAHeadConfig.num_answers is not set; set it to the size of the answer vocabulary")
        out_size = cfg.out_size(hidden_size)
        self.num_answers = cfg.num_answers
        self.fusion = FusedReduction(hidden_size, out_size, cfg.flat_mlp_size, cfg.flat_glimpses, cfg.dropout, layer_norm)
        self.classifier = nn.Linear(out_size, cfg.num_answers)

    def forward(self, text: Tensor, text_mask: Tensor, regions: Tensor, region_mask: Tensor) -> dict[str, Tensor]:
        return {"logits": self.classifier(self.fusion(text, text_mask, regions, region_mask))}


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
        accuracy = 100.0 * vqa_sample_scores(logits.detach().argmax(dim=1), scores).float().mean()
        return loss, to_floats({"loss": loss, "vqa_acc": accuracy})


@torch.no_grad()
def evaluate_vqa(cfg: VQAHeadConfig, run: RunFn, batches: Iterable[MultimodalBatch]) -> dict[str, float]:
    """Soft VQA accuracy overall, per answer type and per question family (see VQAAccuracy)."""
    accuracy = VQAAccuracy()
    for batch in batches:
        logits = require_output(run(batch), "logits", "vqa")
        accuracy.update(
            predict_vqa({"logits": logits})["answer_index"],
            answer_scores_for(logits, batch),
            batch.meta.get("answer_type"),
            batch.meta.get("family"),
        )
    return accuracy.compute()


__all__ = ["TARGET_KEY", "VQAHead", "VQAObjective", "evaluate_vqa", "predict_vqa", "vqa_loss"]
