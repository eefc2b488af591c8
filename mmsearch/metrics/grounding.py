"""Visual-grounding accuracy: a predicted box counts as correct when its IoU with the
ground-truth box is at least a threshold (0.5, the RefCOCO protocol). Accuracies and the mean IoU
are reported in percent (0-100), like the other accumulated metrics."""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from torch import Tensor

from mmsearch.metrics.boxes import PIXEL_OFFSET, aligned_box_iou
from mmsearch.metrics.vqa import metric_key


def grounding_hits(predicted: Tensor, target: Tensor, threshold: float = 0.5, offset: float = PIXEL_OFFSET) -> Tensor:
    """Per-sample correctness ``[B]`` bool for predicted and ground-truth boxes ``[B, 4]``."""
    if predicted.shape != target.shape or predicted.dim() != 2 or predicted.shape[-1] != 4:
        raise ValueError(f"expected predicted and target boxes [B, 4], got {tuple(predicted.shape)} and {tuple(target.shape)}")
    return aligned_box_iou(predicted, target, offset) >= threshold


class GroundingAccuracy:
    """Accumulates accuracy at IoU >= ``threshold`` and the mean IoU over batches.

    ``compute()`` returns ``vg_acc``, ``vg_miou`` (percent), ``vg_count`` and ``vg_acc_family_<family>``
    for every family seen (e.g. which cue disambiguates the referring expression).
    """

    def __init__(self, threshold: float = 0.5, offset: float = PIXEL_OFFSET) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"IoU threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.offset = offset
        self._hits = 0
        self._iou_sum = 0.0
        self._count = 0
        self._by_family: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    def update(self, predicted: Tensor, target: Tensor, families: Sequence[str] | None = None) -> Tensor:
        """Add one batch of boxes ``[B, 4]``; returns the per-sample hits ``[B]`` (on the CPU)."""
        if predicted.shape != target.shape or predicted.dim() != 2 or predicted.shape[-1] != 4:
            raise ValueError(f"expected predicted and target boxes [B, 4], got {tuple(predicted.shape)} and {tuple(target.shape)}")
        iou = aligned_box_iou(predicted.detach().float(), target.detach().float(), self.offset).cpu()
        hits = iou >= self.threshold
        self._hits += int(hits.sum())
        self._iou_sum += float(iou.sum())
        self._count += int(hits.shape[0])
        if families is not None:
            if len(families) != hits.shape[0]:
                raise ValueError(f"got {len(families)} families but {hits.shape[0]} predictions")
            for family, hit in zip(families, hits.tolist()):
                group = self._by_family[metric_key(family)]
                group[0] += int(hit)
                group[1] += 1
        return hits

    def compute(self) -> dict[str, float]:
        if self._count == 0:
            raise ValueError("GroundingAccuracy.compute() called before any update")
        out = {"vg_acc": 100.0 * self._hits / self._count, "vg_miou": 100.0 * self._iou_sum / self._count, "vg_count": float(self._count)}
        for family in sorted(self._by_family):
            hits, count = self._by_family[family]
            out[f"vg_acc_family_{family}"] = 100.0 * hits / count
        return out


__all__ = ["GroundingAccuracy", "grounding_hits"]
