"""Box utilities: IoU, Fast R-CNN box deltas, clipping. Vectorised, any leading batch dims.

Convention: boxes are pixels ``(x1, y1, x2, y2)`` with *inclusive* corners, as in Fast R-CNN,
bottom-up-attention features and MMnas: a box covering pixel columns 10..19 is ``x1=10, x2=19``
and has width ``x2 - x1 + 1 = 10``. Every function takes ``offset`` (default
:data:`PIXEL_OFFSET` = 1) so continuous-coordinate callers can pass ``offset=0`` (width
``x2 - x1``, the torchvision convention). The +1 matters only for small boxes, but it must be
the same in the targets, the decoding and the metric, so everything here shares one default.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

PIXEL_OFFSET = 1.0
DEFAULT_DELTA_STDS = (0.1, 0.1, 0.2, 0.2)  # Fast R-CNN / MMnas normalisation of (dx, dy, dw, dh)
# exp(dw) is capped so a wild regression output cannot overflow (Detectron's log(1000 / 16)).
MAX_LOG_SCALE = math.log(1000.0 / 16.0)


def _check_boxes(name: str, boxes: Tensor) -> None:
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"{name} must have a last dimension of 4 (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")


def box_area(boxes: Tensor, offset: float = PIXEL_OFFSET) -> Tensor:
    """Area of ``[..., 4]`` boxes -> ``[...]``; degenerate boxes have area 0."""
    _check_boxes("boxes", boxes)
    width = (boxes[..., 2] - boxes[..., 0] + offset).clamp(min=0)
    height = (boxes[..., 3] - boxes[..., 1] + offset).clamp(min=0)
    return width * height


def aligned_box_iou(a: Tensor, b: Tensor, offset: float = PIXEL_OFFSET) -> Tensor:
    """IoU of corresponding boxes: ``a [..., 4]``, ``b [..., 4]`` (broadcastable) -> ``[...]``."""
    _check_boxes("a", a)
    _check_boxes("b", b)
    top_left = torch.maximum(a[..., :2], b[..., :2])
    bottom_right = torch.minimum(a[..., 2:], b[..., 2:])
    overlap = (bottom_right - top_left + offset).clamp(min=0)
    intersection = overlap[..., 0] * overlap[..., 1]
    union = box_area(a, offset) + box_area(b, offset) - intersection
    # Two empty boxes have union 0: their IoU is 0, not NaN.
    return intersection / union.clamp(min=torch.finfo(union.dtype).tiny)


def box_iou(a: Tensor, b: Tensor, offset: float = PIXEL_OFFSET) -> Tensor:
    """Pairwise IoU: ``a [..., N, 4]``, ``b [..., M, 4]`` -> ``[..., N, M]``."""
    _check_boxes("a", a)
    _check_boxes("b", b)
    if a.dim() < 2 or b.dim() < 2:
        raise ValueError(f"box_iou needs [..., N, 4] and [..., M, 4], got {tuple(a.shape)} and {tuple(b.shape)}")
    return aligned_box_iou(a.unsqueeze(-2), b.unsqueeze(-3), offset)


def _centres_and_sizes(boxes: Tensor, offset: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    width = boxes[..., 2] - boxes[..., 0] + offset
    height = boxes[..., 3] - boxes[..., 1] + offset
    return boxes[..., 0] + 0.5 * width, boxes[..., 1] + 0.5 * height, width, height


def _stds_like(stds: Sequence[float], like: Tensor) -> Tensor:
    if len(stds) != 4:
        raise ValueError(f"delta stds must have 4 entries (dx, dy, dw, dh), got {len(stds)}")
    return torch.as_tensor(stds, dtype=like.dtype, device=like.device)


def encode_box_deltas(
    proposals: Tensor,
    targets: Tensor,
    stds: Sequence[float] = DEFAULT_DELTA_STDS,
    offset: float = PIXEL_OFFSET,
) -> Tensor:
    """Fast R-CNN regression targets of ``targets`` w.r.t. ``proposals`` (broadcastable ``[..., 4]``).

    ``(dx, dy, dw, dh) = ((tx - px) / pw, (ty - py) / ph, log(tw / pw), log(th / ph)) / stds``
    with centres ``x1 + w / 2``. Proposals must have positive width and height.
    """
    _check_boxes("proposals", proposals)
    _check_boxes("targets", targets)
    px, py, pw, ph = _centres_and_sizes(proposals, offset)
    tx, ty, tw, th = _centres_and_sizes(targets, offset)
    deltas = torch.stack(((tx - px) / pw, (ty - py) / ph, torch.log(tw / pw), torch.log(th / ph)), dim=-1)
    return deltas / _stds_like(stds, deltas)


def decode_box_deltas(
    proposals: Tensor,
    deltas: Tensor,
    stds: Sequence[float] = DEFAULT_DELTA_STDS,
    offset: float = PIXEL_OFFSET,
) -> Tensor:
    """Apply normalised deltas to proposals; the exact inverse of :func:`encode_box_deltas`.

    (py-faster-rcnn's ``bbox_transform_inv``, used by MMnas, omits the ``- offset`` on the far
    corner and so grows every box by one pixel; this version round-trips exactly.)
    """
    _check_boxes("proposals", proposals)
    _check_boxes("deltas", deltas)
    deltas = deltas * _stds_like(stds, deltas)
    px, py, pw, ph = _centres_and_sizes(proposals, offset)
    cx = px + deltas[..., 0] * pw
    cy = py + deltas[..., 1] * ph
    w = pw * torch.exp(deltas[..., 2].clamp(max=MAX_LOG_SCALE))
    h = ph * torch.exp(deltas[..., 3].clamp(max=MAX_LOG_SCALE))
    x1, y1 = cx - 0.5 * w, cy - 0.5 * h
    return torch.stack((x1, y1, x1 + w - offset, y1 + h - offset), dim=-1)


def clip_boxes(boxes: Tensor, image_size: Tensor, offset: float = PIXEL_OFFSET) -> Tensor:
    """Clip ``[..., 4]`` boxes to images of ``image_size [..., 2]`` = (height, width) pixels.

    x is clamped to ``[0, width - offset]`` and y to ``[0, height - offset]`` (the last pixel
    under the inclusive convention). ``image_size`` broadcasts against the boxes' leading dims.
    """
    _check_boxes("boxes", boxes)
    if image_size.shape[-1:] != (2,):
        raise ValueError(f"image_size must have a last dimension of 2 (height, width), got shape {tuple(image_size.shape)}")
    size = image_size.to(boxes.dtype)
    x_max = (size[..., 1] - offset).unsqueeze(-1)
    y_max = (size[..., 0] - offset).unsqueeze(-1)
    upper = torch.cat((x_max, y_max, x_max, y_max), dim=-1)
    return torch.minimum(boxes.clamp(min=0), upper)


__all__ = [
    "DEFAULT_DELTA_STDS",
    "PIXEL_OFFSET",
    "aligned_box_iou",
    "box_area",
    "box_iou",
    "clip_boxes",
    "decode_box_deltas",
    "encode_box_deltas",
]
