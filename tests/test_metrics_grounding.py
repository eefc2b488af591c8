"""Grounding accuracy at IoU >= 0.5."""
from __future__ import annotations

import pytest
import torch

from mmsearch.metrics.grounding import GroundingAccuracy, grounding_hits


def test_hits_use_the_threshold_inclusively():
    target = torch.tensor([[0.0, 0.0, 9.0, 9.0]] * 3)
    predicted = torch.tensor(
        [
            [0.0, 0.0, 9.0, 9.0],  # IoU 1
            [0.0, 0.0, 9.0, 4.0],  # 50 / 100 = 0.5 -> counts
            [0.0, 0.0, 9.0, 3.0],  # 40 / 100 -> miss
        ]
    )
    assert grounding_hits(predicted, target).tolist() == [True, True, False]
    assert grounding_hits(predicted, target, threshold=0.75).tolist() == [True, False, False]


def test_accumulator_accuracy_miou_and_families():
    target = torch.tensor([[0.0, 0.0, 9.0, 9.0]] * 3)
    predicted = torch.tensor([[0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 9.0, 4.0], [0.0, 0.0, 9.0, 3.0]])
    metric = GroundingAccuracy()
    metric.update(predicted[:2], target[:2], ["attribute", "relation"])
    metric.update(predicted[2:], target[2:], ["relation"])
    out = metric.compute()
    assert out["vg_acc"] == pytest.approx(200 / 3)
    assert out["vg_miou"] == pytest.approx(100 * (1.0 + 0.5 + 0.4) / 3)
    assert out["vg_acc_family_attribute"] == 100.0
    assert out["vg_acc_family_relation"] == 50.0
    assert out["vg_count"] == 3


def test_bad_shapes_and_thresholds():
    with pytest.raises(ValueError, match=r"\[B, 4\]"):
        grounding_hits(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="threshold"):
        GroundingAccuracy(threshold=0.0)
