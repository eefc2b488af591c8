"""VQA accuracy with soft scores, overall, per answer type and per question family.

The official VQA metric credits an answer given by ``n`` of 10 annotators with the mean, over
the 10 leave-one-annotator-out subsets, of ``min(1, matches / 3)``; that is
0, 0.3, 0.6, 0.9, 1.0 for n = 0, 1, 2, 3, >= 4 (:func:`official_answer_score`). Data sets store
exactly these numbers as soft target scores, so the accuracy of a prediction is the soft score
of the predicted answer (an answer outside the vocabulary scores 0, as the official metric would
credit it only if it happened to be a human answer). Per-sample scores are in [0, 1]; the
accumulated accuracies are percentages (0-100), as the official evaluation and the retrieval
recalls (:mod:`mmsearch.metrics.retrieval`) report them.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from torch import Tensor

ANSWER_TYPES = ("yes/no", "number", "other")


def official_answer_score(num_matches: int, num_annotators: int = 10) -> float:
    """Official VQA credit for an answer that ``num_matches`` of ``num_annotators`` people gave."""
    if not 0 <= num_matches <= num_annotators:
        raise ValueError(f"num_matches must be in [0, {num_annotators}], got {num_matches}")
    if num_annotators < 2:
        raise ValueError(f"num_annotators must be at least 2, got {num_annotators}")
    with_match_left_out = num_matches * min(1.0, (num_matches - 1) / 3)
    with_other_left_out = (num_annotators - num_matches) * min(1.0, num_matches / 3)
    return (with_match_left_out + with_other_left_out) / num_annotators


def vqa_sample_scores(predicted: Tensor, answer_scores: Tensor) -> Tensor:
    """Soft accuracy of each prediction: ``predicted [B]`` answer indices, ``answer_scores [B, A]`` -> ``[B]``."""
    if answer_scores.dim() != 2 or predicted.shape != answer_scores.shape[:1]:
        raise ValueError(
            f"expected predicted [B] and answer_scores [B, A], got {tuple(predicted.shape)} and {tuple(answer_scores.shape)}"
        )
    return answer_scores.gather(1, predicted.long().unsqueeze(1)).squeeze(1)


def metric_key(text: str) -> str:
    """'yes/no' -> 'yes_no': metric names stay flat (a '/' would nest them in Tune and TensorBoard)."""
    return "".join(c if c.isalnum() else "_" for c in text.strip().lower())


class VQAAccuracy:
    """Accumulates soft VQA accuracy over batches.

    ``compute()`` returns, in percent, ``vqa_acc`` (overall), ``vqa_acc_<type>`` for every answer type seen
    (``yes_no``, ``number``, ``other``), ``vqa_acc_family_<family>`` for every question family
    seen, and ``vqa_count`` (number of questions).
    """

    def __init__(self) -> None:
        self._total = 0.0
        self._count = 0
        self._by_group: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])

    def update(
        self,
        predicted: Tensor,
        answer_scores: Tensor,
        answer_types: Sequence[str] | None = None,
        families: Sequence[str] | None = None,
    ) -> Tensor:
        """Add one batch; returns the per-sample scores ``[B]`` (on the CPU)."""
        scores = vqa_sample_scores(predicted, answer_scores).detach().float().cpu()
        batch = scores.shape[0]
        self._total += float(scores.sum())
        self._count += batch
        for prefix, labels in (("vqa_acc_", answer_types), ("vqa_acc_family_", families)):
            if labels is None:
                continue
            if len(labels) != batch:
                raise ValueError(f"got {len(labels)} labels for {prefix.rstrip('_')} but {batch} predictions")
            for label, score in zip(labels, scores.tolist()):
                group = self._by_group[prefix + metric_key(label)]
                group[0] += score
                group[1] += 1
        return scores

    def compute(self) -> dict[str, float]:
        if self._count == 0:
            raise ValueError("VQAAccuracy.compute() called before any update")
        out = {"vqa_acc": 100.0 * self._total / self._count, "vqa_count": float(self._count)}
        for key in sorted(self._by_group):
            total, count = self._by_group[key]
            out[key] = 100.0 * total / count
        return out


__all__ = ["ANSWER_TYPES", "VQAAccuracy", "metric_key", "official_answer_score", "vqa_sample_scores"]
