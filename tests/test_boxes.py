"""Box utilities against hand-computed values (inclusive-pixel convention unless offset=0)."""
from __future__ import annotations

import math

import pytest
import torch

from mmsearch.metrics.boxes import (
    aligned_box_iou,
    box_area,
    box_iou,
    clip_boxes,
    decode_box_deltas,
    encode_box_deltas,
)


def boxes(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_area_counts_pixels_inclusively():
    assert box_area(boxes([0, 0, 9, 9], [3, 4, 3, 4], [5, 5, 3, 3])).tolist() == [100.0, 1.0, 0.0]
    assert box_area(boxes([0, 0, 9, 9]), offset=0).tolist() == [81.0]


def test_pairwise_iou_hand_computed():
    a = boxes([0, 0, 9, 9], [0, 0, 5, 5])
    b = boxes([5, 5, 14, 14], [5, 0, 9, 5], [2, 2, 5, 5], [20, 20, 29, 29])
    iou = box_iou(a, b)
    assert iou.shape == (2, 4)
    # (0,0,9,9) vs (5,5,14,14): overlap 5x5 = 25, union 100 + 100 - 25 = 175.
    assert iou[0, 0].item() == pytest.approx(25 / 175)
    # (0,0,5,5) vs (5,0,9,5): they share pixel column 5 -> overlap 1x6 = 6, union 36 + 30 - 6.
    assert iou[1, 1].item() == pytest.approx(6 / 60)
    # containment: 4x4 = 16 inside 10x10
    assert iou[0, 2].item() == pytest.approx(16 / 100)
    assert iou[0, 3].item() == 0.0 and iou[1, 3].item() == 0.0


def test_iou_without_pixel_offset():
    iou = box_iou(boxes([0, 0, 9, 9]), boxes([5, 5, 14, 14]), offset=0)
    assert iou.item() == pytest.approx(16 / (81 + 81 - 16))
    # touching edges do not overlap in continuous coordinates
    assert box_iou(boxes([0, 0, 5, 5]), boxes([5, 0, 9, 5]), offset=0).item() == 0.0


def test_iou_batched_and_aligned_agree():
    torch.manual_seed(0)
    xy = torch.rand(3, 5, 2) * 50
    a = torch.cat((xy, xy + torch.rand(3, 5, 2) * 30), dim=-1)
    xy = torch.rand(3, 4, 2) * 50
    b = torch.cat((xy, xy + torch.rand(3, 4, 2) * 30), dim=-1)
    pairwise = box_iou(a, b)
    assert pairwise.shape == (3, 5, 4)
    for i in range(5):
        for j in range(4):
            torch.testing.assert_close(pairwise[:, i, j], aligned_box_iou(a[:, i], b[:, j]))
    assert (pairwise >= 0).all() and (pairwise <= 1).all()
    torch.testing.assert_close(aligned_box_iou(a, a), torch.ones(3, 5))


def test_empty_boxes_have_zero_iou_not_nan():
    empty = boxes([5, 5, 4, 4])
    assert box_iou(empty, empty, offset=0).item() == 0.0


def test_bad_box_shapes_are_named():
    with pytest.raises(ValueError, match="last dimension of 4"):
        box_iou(torch.zeros(2, 3), torch.zeros(2, 4))


def test_deltas_hand_computed():
    proposal = boxes([0, 0, 9, 19])  # w 10, h 20, centre (5, 10)
    target = boxes([5, 0, 24, 19])  # w 20, h 20, centre (15, 10)
    deltas = encode_box_deltas(proposal, target, stds=(1, 1, 1, 1))
    torch.testing.assert_close(deltas, torch.tensor([[1.0, 0.0, math.log(2.0), 0.0]]))
    normalised = encode_box_deltas(proposal, target)  # stds (0.1, 0.1, 0.2, 0.2)
    torch.testing.assert_close(normalised, torch.tensor([[10.0, 0.0, math.log(2.0) / 0.2, 0.0]]))


@pytest.mark.parametrize("offset", [1.0, 0.0])
def test_delta_round_trip(offset):
    torch.manual_seed(1)
    xy = torch.rand(4, 6, 2) * 100
    proposals = torch.cat((xy, xy + 5 + torch.rand(4, 6, 2) * 60), dim=-1)
    xy = torch.rand(4, 6, 2) * 100
    targets = torch.cat((xy, xy + 5 + torch.rand(4, 6, 2) * 60), dim=-1)
    deltas = encode_box_deltas(proposals, targets, offset=offset)
    torch.testing.assert_close(decode_box_deltas(proposals, deltas, offset=offset), targets, rtol=1e-5, atol=1e-3)
    # zero deltas give the proposal back
    torch.testing.assert_close(decode_box_deltas(proposals, torch.zeros_like(deltas), offset=offset), proposals)


def test_decode_caps_huge_scales():
    out = decode_box_deltas(boxes([0, 0, 9, 9]), boxes([0, 0, 1e4, 1e4]))
    assert torch.isfinite(out).all()


def test_clip_to_image_height_width():
    image_size = torch.tensor([[50.0, 80.0]])  # height 50, width 80
    clipped = clip_boxes(boxes([-10, -5, 100, 70]), image_size)
    assert clipped.tolist() == [[0.0, 0.0, 79.0, 49.0]]
    assert clip_boxes(boxes([-10, -5, 100, 70]), image_size, offset=0).tolist() == [[0.0, 0.0, 80.0, 50.0]]
    inside = boxes([3, 4, 20, 30])
    assert clip_boxes(inside, image_size).tolist() == inside.tolist()
    with pytest.raises(ValueError, match="height, width"):
        clip_boxes(inside, torch.tensor([[50.0, 80.0, 1.0]]))
