"""VG targets, loss and prediction against hand-worked boxes."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmsearch.batch import MultimodalBatch
from mmsearch.tasks import build_head, evaluate, make_objective, predict
from mmsearch.heads.vg import grounding_targets


def vg_batch(boxes, mask, gt, image_size=((100.0, 100.0), (100.0, 100.0)), family=None) -> MultimodalBatch:
    boxes = torch.tensor(boxes, dtype=torch.float32)
    meta = {"family": family} if family else {}
    return MultimodalBatch(
        text_mask=torch.zeros(boxes.shape[0], 2, dtype=torch.bool),
        region_boxes=boxes,
        region_mask=torch.tensor(mask),
        image_size=torch.tensor(image_size),
        targets={"gt_box": torch.tensor(gt, dtype=torch.float32)},
        meta=meta,
    )


# Sample 0: ground truth (0,0,9,9), area 100. Proposals: identical (IoU 1), bottom half (IoU 0.5,
# counts), 40 % (IoU 0.4, does not), and an identical box that is padding (excluded).
# Sample 1: no proposal overlaps the ground truth at all.
BOXES = [
    [[0, 0, 9, 9], [0, 0, 9, 4], [0, 0, 9, 3], [0, 0, 9, 9]],
    [[0, 0, 9, 9], [0, 0, 9, 4], [20, 20, 29, 29], [0, 0, 0, 0]],
]
MASK = [[False, False, False, True], [False, False, False, True]]
GT = [[0, 0, 9, 9], [50, 50, 59, 59]]


def test_targets_hand_worked():
    batch = vg_batch(BOXES, MASK, GT)
    t = grounding_targets(batch.region_boxes, batch.region_mask, batch.targets["gt_box"])
    torch.testing.assert_close(t.iou[0], torch.tensor([1.0, 0.5, 0.4, 0.0]))
    assert t.positive.tolist() == [[True, True, False, False], [False, False, False, False]]
    torch.testing.assert_close(t.distribution[0], torch.tensor([1 / 1.5, 0.5 / 1.5, 0.0, 0.0]))
    torch.testing.assert_close(t.distribution[1], torch.zeros(4))
    assert t.has_positive.tolist() == [True, False]
    # (0,0,9,4): w 10, h 5, centre (5, 2.5) -> ground truth centre (5, 5), w 10, h 10
    torch.testing.assert_close(t.deltas[0, 1], torch.tensor([0.0, 0.5 / 0.1, 0.0, math.log(2.0) / 0.2]))
    torch.testing.assert_close(t.deltas[0, 0], torch.zeros(4))
    assert (t.deltas[1] == 0).all() and torch.isfinite(t.deltas).all()  # the zero-size padding box too


def test_threshold_is_configurable():
    batch = vg_batch(BOXES, MASK, GT)
    t = grounding_targets(batch.region_boxes, batch.region_mask, batch.targets["gt_box"], positive_iou=0.45)
    assert t.positive[0].tolist() == [True, True, False, False]
    t = grounding_targets(batch.region_boxes, batch.region_mask, batch.targets["gt_box"], positive_iou=0.35)
    assert t.positive[0].tolist() == [True, True, True, False]


def test_loss_is_masked_kl_plus_half_smooth_l1():
    batch = vg_batch(BOXES, MASK, GT)
    fill = torch.finfo(torch.float32).min / 4
    scores = torch.tensor([[1.0, 0.0, -1.0, fill], [0.5, 0.2, 0.1, fill]], requires_grad=True)
    deltas = torch.zeros(2, 4, 4, requires_grad=True)
    loss, logs = make_objective("vg").loss(lambda b: {"scores": scores, "box_deltas": deltas}, batch)
    target = torch.tensor([1 / 1.5, 0.5 / 1.5, 0.0])
    log_probs = torch.log_softmax(scores[0, :3].detach(), dim=0)
    kl = float((torch.xlogy(target, target) - target * log_probs).sum())  # sample 1 has no target
    regression = float(F.smooth_l1_loss(torch.zeros(4), torch.tensor([0.0, 5.0, 0.0, math.log(2.0) / 0.2]), reduction="sum")) / 2
    assert logs["vg_kl"] == pytest.approx(kl, rel=1e-5)
    assert logs["vg_regression"] == pytest.approx(regression, rel=1e-5)
    assert loss.item() == pytest.approx(kl + 0.5 * regression, rel=1e-5)
    assert logs["vg_has_positive"] == 50.0
    loss.backward()
    assert (scores.grad[1] == 0).all() and (deltas.grad[1] == 0).all()  # no target, no gradient
    assert (deltas.grad[0, 2:] == 0).all() and deltas.grad[0, 1].abs().sum() > 0  # only positives regress


def test_batch_without_any_positive_gives_a_zero_finite_loss():
    batch = vg_batch([[[0, 0, 9, 9]], [[0, 0, 9, 9]]], [[False], [False]], [[50, 50, 59, 59], [50, 50, 59, 59]])
    scores = torch.zeros(2, 1, requires_grad=True)
    loss, _ = make_objective("vg").loss(lambda b: {"scores": scores, "box_deltas": torch.zeros(2, 1, 4)}, batch)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(scores.grad).all()


def test_prediction_refines_the_top_region_and_clips_to_the_image():
    boxes = [[[0, 0, 9, 4], [0, 0, 9, 9]], [[50, 0, 59, 9], [20, 10, 29, 19]]]
    batch = vg_batch(boxes, [[False, False], [False, False]], [[0, 0, 9, 4], [15, 10, 29, 19]], image_size=((20.0, 30.0), (20.0, 30.0)))
    scores = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    widen = torch.tensor([0.0, 0.0, math.log(2.0) / 0.2, 0.0])  # double the width around the centre
    deltas = torch.stack((widen, widen)).unsqueeze(0).expand(2, 2, 4)
    out = predict("vg", {"scores": scores, "box_deltas": deltas}, batch)
    assert out["region_index"].tolist() == [0, 1]
    # sample 0: (0,0,9,4) -> width 20 around x-centre 5 = (-5, 0, 14, 4) -> clipped x1 = 0
    # sample 1: (20,10,29,19) -> (15, 10, 34, 19) -> clipped to the last column, 29 (width 30)
    torch.testing.assert_close(out["box"], torch.tensor([[0.0, 0.0, 14.0, 4.0], [15.0, 10.0, 29.0, 19.0]]))
    torch.testing.assert_close(out["region_prob"], torch.sigmoid(torch.tensor([1.0, 3.0])))
    metrics = evaluate("vg", lambda b: {"scores": scores, "box_deltas": deltas}, [batch])
    assert metrics["vg_acc"] == 100.0  # both refined boxes match their ground truth exactly
    # (0,0,14,4) vs (0,0,9,4): 50 / 75 -> still a hit; a stricter threshold rejects it
    assert evaluate(make_objective("vg", accuracy_iou=0.9).cfg, lambda b: {"scores": scores, "box_deltas": deltas}, [batch])["vg_acc"] == 50.0


def test_head_never_ranks_a_padded_region_first():
    torch.manual_seed(0)
    head = build_head("vg", 8, dropout=0.0).eval()
    mask = torch.tensor([[False, True, True], [False, False, True]])
    out = head(torch.randn(2, 3, 8), torch.zeros(2, 3, dtype=torch.bool), torch.randn(2, 3, 8), mask)
    assert (out["scores"][mask] < -1e30).all()
    assert (out["box_deltas"][mask] == 0).all()
    assert not mask.gather(1, out["scores"].argmax(dim=1, keepdim=True)).any()


def test_bad_targets_are_named():
    batch = vg_batch(BOXES, MASK, GT)
    batch.targets["gt_box"] = batch.targets["gt_box"][:, :3]
    with pytest.raises(ValueError, match=r"gt_box must be \[B, 4\]"):
        make_objective("vg").targets(batch)
    batch.targets.pop("gt_box")
    with pytest.raises(KeyError, match="gt_box"):
        make_objective("vg").targets(batch)
