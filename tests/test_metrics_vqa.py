"""Soft VQA accuracy: the official per-answer credit and a hand-worked accumulation."""
from __future__ import annotations

import pytest
import torch

from mmsearch.metrics.vqa import VQAAccuracy, metric_key, official_answer_score, vqa_sample_scores


@pytest.mark.parametrize("matches, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_official_credit_is_the_leave_one_out_mean(matches, expected):
    assert official_answer_score(matches) == pytest.approx(expected)


def test_official_credit_rejects_impossible_counts():
    with pytest.raises(ValueError, match="num_matches"):
        official_answer_score(11)


def test_sample_score_is_the_soft_score_of_the_prediction():
    scores = torch.tensor([[0.0, 0.3, 1.0], [0.9, 0.0, 0.6]])
    assert vqa_sample_scores(torch.tensor([2, 2]), scores).tolist() == pytest.approx([1.0, 0.6])
    with pytest.raises(ValueError, match=r"predicted \[B\]"):
        vqa_sample_scores(torch.tensor([0, 1, 2]), scores)


def test_accumulated_accuracy_overall_by_type_and_family():
    # answers: 0 "yes", 1 "no", 2 "2", 3 "red"
    scores = torch.tensor(
        [
            [1.0, 0.0, 0.0, 0.0],  # yes/no, predicted yes -> 1.0
            [0.3, 0.9, 0.0, 0.0],  # yes/no, predicted yes -> 0.3
            [0.0, 0.0, 0.6, 0.0],  # number, predicted 2 -> 0.6
            [0.0, 0.0, 0.0, 0.9],  # other, predicted 2 -> 0.0
        ]
    )
    metric = VQAAccuracy()
    per_sample = metric.update(
        torch.tensor([0, 0, 2, 2]),
        scores,
        ["yes/no", "yes/no", "number", "other"],
        ["exist", "exist", "count", "attribute"],
    )
    assert per_sample.tolist() == pytest.approx([1.0, 0.3, 0.6, 0.0])
    metric.update(torch.tensor([3]), torch.tensor([[0.0, 0.0, 0.0, 0.9]]), ["other"], ["relation"])
    out = metric.compute()
    assert out["vqa_acc"] == pytest.approx(100 * (1.0 + 0.3 + 0.6 + 0.0 + 0.9) / 5)
    assert out["vqa_acc_yes_no"] == pytest.approx(65.0)
    assert out["vqa_acc_number"] == pytest.approx(60.0)
    assert out["vqa_acc_other"] == pytest.approx(45.0)
    assert out["vqa_acc_family_exist"] == pytest.approx(65.0)
    assert out["vqa_acc_family_relation"] == pytest.approx(90.0)
    assert out["vqa_count"] == 5


def test_accumulator_errors():
    metric = VQAAccuracy()
    with pytest.raises(ValueError, match="before any update"):
        metric.compute()
    with pytest.raises(ValueError, match="2 labels"):
        metric.update(torch.tensor([0]), torch.ones(1, 2), ["yes/no", "other"])


def test_metric_keys_are_flat():
    assert metric_key("yes/no") == "yes_no"
    assert metric_key(" Number ") == "number"
