"""VQA objective, prediction and evaluation with fixed logits (no network needed)."""
from __future__ import annotations

import math

import pytest
import torch

from mmsearch.batch import MultimodalBatch
from mmsearch.tasks import evaluate, make_objective, predict


def batch_with(scores: torch.Tensor, **meta) -> MultimodalBatch:
    size = scores.shape[0]
    return MultimodalBatch(text_mask=torch.zeros(size, 3, dtype=torch.bool), targets={"answer_scores": scores}, meta=dict(meta))


def fixed_run(logits: torch.Tensor):
    return lambda batch: {"logits": logits}


def bce(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_loss_is_bce_against_soft_scores_sum_or_mean():
    logits = torch.tensor([[2.0, -1.0], [0.0, 0.5]])
    scores = torch.tensor([[1.0, 0.3], [0.0, 0.9]])
    expected_sum = bce(2.0, 1.0) + bce(-1.0, 0.3) + bce(0.0, 0.0) + bce(0.5, 0.9)
    loss, logs = make_objective("vqa", num_answers=2).loss(fixed_run(logits), batch_with(scores))
    assert loss.item() == pytest.approx(expected_sum, rel=1e-5)
    # predicted answers: 0 (score 1.0) and 1 (score 0.9)
    assert logs["vqa_acc"] == pytest.approx(95.0)
    loss, _ = make_objective("vqa", num_answers=2, reduction="mean").loss(fixed_run(logits), batch_with(scores))
    assert loss.item() == pytest.approx(expected_sum / 2, rel=1e-5)


def test_answer_vocabulary_mismatch_names_both_sizes():
    objective = make_objective("vqa", num_answers=3)
    with pytest.raises(ValueError, match=r"data \(4 answers\).*num_answers=3"):
        objective.loss(fixed_run(torch.zeros(2, 3)), batch_with(torch.zeros(2, 4)))


def test_missing_or_bad_targets_are_named():
    objective = make_objective("vqa", num_answers=2)
    empty = MultimodalBatch(text_mask=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(KeyError, match="answer_scores"):
        objective.loss(fixed_run(torch.zeros(2, 2)), empty)
    with pytest.raises(ValueError, match="NaN"):
        objective.loss(fixed_run(torch.zeros(2, 2)), batch_with(torch.tensor([[float("nan"), 0.0], [0.0, 1.0]])))


def test_predict_takes_the_argmax_answer():
    logits = torch.tensor([[0.1, 3.0, -2.0], [5.0, 0.0, 1.0]])
    out = predict("vqa", {"logits": logits}, batch_with(torch.zeros(2, 3)))
    assert out["answer_index"].tolist() == [1, 0]
    torch.testing.assert_close(out["answer_prob"], torch.sigmoid(torch.tensor([3.0, 5.0])))


def test_evaluate_accumulates_by_answer_type_and_family():
    first = batch_with(torch.tensor([[1.0, 0.0], [0.3, 0.0]]), answer_type=["yes/no", "yes/no"], family=["exist", "count"])
    second = batch_with(torch.tensor([[0.0, 0.6]]), answer_type=["number"], family=["count"])
    logits = {id(first): torch.tensor([[1.0, 0.0], [1.0, 0.0]]), id(second): torch.tensor([[0.0, 1.0]])}
    metrics = evaluate("vqa", lambda b: {"logits": logits[id(b)]}, [first, second])
    assert metrics["vqa_acc"] == pytest.approx(100 * (1.0 + 0.3 + 0.6) / 3)
    assert metrics["vqa_acc_yes_no"] == pytest.approx(65.0)
    assert metrics["vqa_acc_number"] == pytest.approx(60.0)
    assert metrics["vqa_acc_family_count"] == pytest.approx(45.0)
