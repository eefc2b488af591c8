"""Box geometry: the vectorised tensor equals a slow per-pair transcription of MMnas's formula."""
from __future__ import annotations

import math

import pytest
import torch

from mmsearch.ops import box_relation_geometry, normalized_box_features


def slow_mmnas_geometry(boxes: list[list[float]]) -> list[list[list[float]]]:
    """MMnas's relation_embedding, one pair at a time, in Python floats."""
    out = []
    for x1, y1, x2, y2 in boxes:
        cx_i, cy_i, w_i, h_i = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1 + 1, y2 - y1 + 1
        row = []
        for a1, b1, a2, b2 in boxes:
            cx_j, cy_j, w_j, h_j = (a1 + a2) / 2, (b1 + b2) / 2, a2 - a1 + 1, b2 - b1 + 1
            row.append(
                [
                    math.log(max(abs(cx_i - cx_j) / w_i, 1e-3)),
                    math.log(max(abs(cy_i - cy_j) / h_i, 1e-3)),
                    math.log(w_i / w_j),
                    math.log(h_i / h_j),
                ]
            )
        out.append(row)
    return out


def _random_boxes(b: int, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(b, n, 2, generator=g) * 500
    return torch.cat([xy, xy + torch.rand(b, n, 2, generator=g) * 200], dim=-1)


def test_matches_slow_per_pair_reference():
    boxes = _random_boxes(3, 9)
    boxes[0, 1] = boxes[0, 2]  # identical boxes -> offsets at the 1e-3 floor
    fast = box_relation_geometry(boxes)
    assert fast.shape == (3, 9, 9, 4)
    for b in range(3):
        ref = torch.tensor(slow_mmnas_geometry(boxes[b].double().tolist()), dtype=torch.float32)
        torch.testing.assert_close(fast[b], ref, atol=1e-5, rtol=1e-5)
    assert fast[0, 1, 2, 0] == pytest.approx(math.log(1e-3))


def test_zero_padding_and_degenerate_boxes_stay_finite():
    boxes = _random_boxes(2, 5)
    boxes[1, 3:] = 0.0  # padding rows as the data layer writes them
    boxes[0, 0] = torch.tensor([50.0, 50.0, 10.0, 10.0])  # x2 < x1: width would be negative
    assert torch.isfinite(box_relation_geometry(boxes)).all()


def test_geometry_cannot_tell_left_from_right_but_box_feature_can():
    left = torch.tensor([[[10.0, 10.0, 30.0, 30.0], [50.0, 10.0, 70.0, 30.0]]])
    mirrored = torch.tensor([[[50.0, 10.0, 70.0, 30.0], [10.0, 10.0, 30.0, 30.0]]])
    torch.testing.assert_close(box_relation_geometry(left), box_relation_geometry(mirrored))
    size = torch.tensor([[100.0, 100.0]])
    assert not torch.allclose(normalized_box_features(left, size), normalized_box_features(mirrored, size))


def test_normalized_box_features_formula():
    boxes = torch.tensor([[[10.0, 20.0, 60.0, 100.0]]])
    size = torch.tensor([[200.0, 100.0]])  # height, width
    feat = normalized_box_features(boxes, size)
    expected = torch.tensor([[[0.1, 0.1, 0.6, 0.5, 50 * 80 / (200 * 100)]]])
    torch.testing.assert_close(feat, expected)


def test_bad_shapes_fail_clearly():
    with pytest.raises(ValueError, match=r"\[B, N, 4\]"):
        box_relation_geometry(torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="float"):
        box_relation_geometry(torch.zeros(2, 3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="image_size"):
        normalized_box_features(torch.zeros(2, 3, 4), torch.zeros(3, 2))
