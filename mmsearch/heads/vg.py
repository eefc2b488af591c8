"""Visual grounding: rank the region proposals against the expression and refine the best one.

Per region: ``LayerNorm(Linear(H -> D)(region) + AttFlat(text))`` -> a ranking score
(``Linear(D -> 1)``) and normalised Fast R-CNN deltas (``Linear(D -> 4)``), D = 2H by default.

Reads ``batch.targets["gt_box"]`` ``[B, 4]`` (pixels x1 y1 x2 y2), ``batch.region_boxes``
``[B, N, 4]``, ``batch.region_mask`` ``[B, N]`` and, to clip predictions, ``batch.image_size``
``[B, 2]`` (height, width). The IoU targets are computed here from the boxes (the contract's
optional ``region_iou`` target is not read), so the targets, the decoding and the metric share
one box convention (:mod:`mmsearch.metrics.boxes`, inclusive pixels).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsearch.batch import MultimodalBatch
from mmsearch.heads.config import VGHeadConfig
from mmsearch.heads.fusion import AttFlat, check_stream, head_layer_norm, padding_fill_value
from mmsearch.heads.objective import RunFn, check_finite, require_field, require_output, require_target, to_floats
from mmsearch.metrics.boxes import aligned_box_iou, box_iou, clip_boxes, decode_box_deltas, encode_box_deltas
from mmsearch.metrics.grounding import GroundingAccuracy

TARGET_KEY = "gt_box"


class VGHead(nn.Module):
    """Outputs ``{"scores": [B, N], "box_deltas": [B, N, 4]}``; padded regions get a very negative
    score and zero deltas."""

    def __init__(self, cfg: VGHeadConfig, hidden_size: int, layer_norm: str = "torch") -> None:
        super().__init__()
        out_size = cfg.out_size(hidden_size)
        self.hidden_size = hidden_size
        self.text_flat = AttFlat(hidden_size, out_size, cfg.flat_mlp_size, cfg.flat_glimpses, cfg.dropout)
        self.region_proj = nn.Linear(hidden_size, out_size)
        self.norm = head_layer_norm(out_size, layer_norm)
        self.score = nn.Linear(out_size, 1)
        self.box = nn.Linear(out_size, 4)

    def forward(self, text: Tensor, text_mask: Tensor, regions: Tensor, region_mask: Tensor) -> dict[str, Tensor]:
        check_stream("text", text, text_mask, self.hidden_size)
        check_stream("region", regions, region_mask, self.hidden_size)
        fused = self.norm(self.region_proj(regions) + self.text_flat(text, text_mask).unsqueeze(1))
        return region_outputs(fused, region_mask, self.score, self.box)


def region_outputs(fused: Tensor, region_mask: Tensor, score: nn.Module, box: nn.Module) -> dict[str, Tensor]:
    """The VG outputs from per-region vectors ``fused`` ``[B, N, D]``: ``score`` and ``box`` give every
    region its score and box deltas; padded regions get a very negative score and zero deltas."""
    padding = region_mask.unsqueeze(-1)
    scores = score(fused).masked_fill(padding, padding_fill_value(fused.dtype)).squeeze(-1)
    return {"scores": scores, "box_deltas": box(fused).masked_fill(padding, 0.0)}


@dataclass
class GroundingTargets:
    iou: Tensor  # [B, N] IoU of each proposal with the ground truth (0 at padding)
    positive: Tensor  # [B, N] bool, IoU >= positive_iou and not padding
    distribution: Tensor  # [B, N] IoU of the positives normalised to sum 1 per sample (0 elsewhere)
    has_positive: Tensor  # [B] bool, samples that have a target distribution
    deltas: Tensor  # [B, N, 4] normalised deltas of the ground truth w.r.t. each positive (0 elsewhere)


def grounding_targets(
    region_boxes: Tensor,
    region_mask: Tensor,
    gt_box: Tensor,
    positive_iou: float = 0.5,
    delta_stds: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
) -> GroundingTargets:
    """Ranking and regression targets from proposals ``[B, N, 4]`` and ground truth ``[B, 4]``."""
    if region_boxes.dim() != 3 or region_boxes.shape[-1] != 4:
        raise ValueError(f"region_boxes must be [B, N, 4], got {tuple(region_boxes.shape)}")
    if gt_box.shape != (region_boxes.shape[0], 4):
        raise ValueError(f"vg: gt_box must be [B, 4] = [{region_boxes.shape[0]}, 4], got {tuple(gt_box.shape)}")
    if region_mask.shape != region_boxes.shape[:2]:
        raise ValueError(f"region_mask must be [B, N] = {tuple(region_boxes.shape[:2])}, got {tuple(region_mask.shape)}")
    gt = gt_box.to(region_boxes.dtype).unsqueeze(1)  # [B, 1, 4]
    iou = box_iou(region_boxes, gt).squeeze(-1).masked_fill(region_mask, 0.0)
    positive = iou >= positive_iou
    weights = iou * positive
    total = weights.sum(dim=1, keepdim=True)
    distribution = weights / total.clamp(min=torch.finfo(total.dtype).tiny)
    # Degenerate (e.g. zero-size padding) proposals give NaN/inf deltas; only positives are kept.
    deltas = encode_box_deltas(region_boxes, gt, delta_stds)
    deltas = torch.where(positive.unsqueeze(-1), deltas, torch.zeros_like(deltas))
    return GroundingTargets(iou, positive, distribution, positive.any(dim=1), deltas)


def vg_loss(
    scores: Tensor, box_deltas: Tensor, targets: GroundingTargets, regression_weight: float = 0.5
) -> tuple[Tensor, Tensor, Tensor]:
    """``(total, kl, regression)``: KL(target distribution || softmax(scores)) averaged over samples
    with a positive proposal, plus ``regression_weight`` x smooth-L1 of the deltas averaged over
    positive proposals (both as MMnas). Samples without a positive contribute nothing."""
    log_probs = torch.log_softmax(scores, dim=1)
    target = targets.distribution.to(log_probs.dtype)
    kl = (torch.xlogy(target, target) - target * log_probs).sum()
    kl = kl / targets.has_positive.sum().clamp(min=1)
    regression = F.smooth_l1_loss(box_deltas, targets.deltas.to(box_deltas.dtype), reduction="none").sum(dim=-1)
    regression = (regression * targets.positive).sum() / targets.positive.sum().clamp(min=1)
    return kl + regression_weight * regression, kl, regression


def predict_vg(
    outputs: dict[str, Tensor], batch: MultimodalBatch, delta_stds: Sequence[float] = (0.1, 0.1, 0.2, 0.2)
) -> dict[str, Tensor]:
    """The top-scoring region refined by its predicted deltas and clipped to the image.

    Returns ``box [B, 4]`` (pixels), ``region_index [B]`` and ``region_prob [B]`` (its softmax
    probability over the regions). Without ``batch.image_size`` the box is not clipped.
    """
    scores = require_output(outputs, "scores", "vg")
    deltas = require_output(outputs, "box_deltas", "vg")
    boxes = require_field(batch, "region_boxes", "vg", "[B, N, 4] pixels")
    probs, index = torch.softmax(scores, dim=1).max(dim=1)
    rows = torch.arange(scores.shape[0], device=scores.device)
    box = decode_box_deltas(boxes[rows, index].to(deltas.dtype), deltas[rows, index], delta_stds)
    if batch.image_size is not None:
        box = clip_boxes(box, batch.image_size)
    return {"box": box, "region_index": index, "region_prob": probs}


class VGObjective:
    def __init__(self, cfg: VGHeadConfig) -> None:
        self.cfg = cfg

    def targets(self, batch: MultimodalBatch) -> GroundingTargets:
        gt_box = require_target(batch, TARGET_KEY, "vg", "[B, 4] pixels x1 y1 x2 y2")
        check_finite("vg gt_box", gt_box)
        boxes = require_field(batch, "region_boxes", "vg", "[B, N, 4] pixels")
        mask = require_field(batch, "region_mask", "vg", "[B, N] bool, True = padding")
        return grounding_targets(boxes, mask, gt_box, self.cfg.positive_iou, self.cfg.delta_stds)

    def prepare(self, run: RunFn, batch: MultimodalBatch, epoch: int = 0) -> MultimodalBatch:
        return batch  # one forward on the batch as it is

    def loss(self, run: RunFn, batch: MultimodalBatch, epoch: int = 0) -> tuple[Tensor, dict[str, float]]:
        return self.loss_from_outputs(run(batch), batch)

    def loss_from_outputs(self, outputs: dict[str, Tensor], batch: MultimodalBatch) -> tuple[Tensor, dict[str, float]]:
        scores = require_output(outputs, "scores", "vg")
        deltas = require_output(outputs, "box_deltas", "vg")
        targets = self.targets(batch)
        if scores.shape != targets.iou.shape:
            raise ValueError(f"vg: head scores {tuple(scores.shape)} do not match region_boxes {tuple(targets.iou.shape)} regions")
        loss, kl, regression = vg_loss(scores, deltas, targets, self.cfg.regression_weight)
        with torch.no_grad():
            detached = {"scores": scores.detach(), "box_deltas": deltas.detach()}
            predicted = predict_vg(detached, batch, self.cfg.delta_stds)["box"]
            hits = aligned_box_iou(predicted, batch.targets[TARGET_KEY].to(predicted.dtype)) >= self.cfg.accuracy_iou
            accuracy = 100.0 * hits.float().mean()
        logs = {
            "loss": loss,
            "vg_kl": kl,
            "vg_regression": regression,
            "vg_has_positive": 100.0 * targets.has_positive.float().mean(),  # % of samples with a target
            "vg_acc": accuracy,
        }
        return loss, to_floats(logs)


@torch.no_grad()
def evaluate_vg(cfg: VGHeadConfig, run: RunFn, batches: Iterable[MultimodalBatch]) -> dict[str, float]:
    """Accuracy at IoU >= ``cfg.accuracy_iou`` after refining the top region; mean IoU; per family."""
    accuracy = GroundingAccuracy(cfg.accuracy_iou)
    for batch in batches:
        predicted = predict_vg(run(batch), batch, cfg.delta_stds)["box"]
        gt_box = require_target(batch, TARGET_KEY, "vg", "[B, 4] pixels x1 y1 x2 y2")
        accuracy.update(predicted, gt_box.to(predicted.dtype), batch.meta.get("family"))
    return accuracy.compute()


__all__ = ["GroundingTargets", "TARGET_KEY", "VGHead", "VGObjective", "evaluate_vg", "grounding_targets", "predict_vg", "vg_loss"]
