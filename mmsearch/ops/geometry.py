"""Box geometry for relation self-attention and the normalised box feature, vectorised on the device.

MMnas builds the pairwise geometry per image on the CPU inside its data loader; here it is one
batched tensor expression on whatever device the boxes live on.

Pairwise geometry (MMnas ``relation_embedding``), boxes in pixels ``(x1, y1, x2, y2)``,
``cx = (x1 + x2) / 2``, ``w = x2 - x1 + 1`` (likewise ``cy``, ``h``), query i, key j::

    R[i, j, 0] = log(max(|cx_i - cx_j| / w_i, 1e-3))
    R[i, j, 1] = log(max(|cy_i - cy_j| / h_i, 1e-3))
    R[i, j, 2] = log(w_i / w_j)
    R[i, j, 3] = log(h_i / h_j)

The centre offsets are absolute values, so the geometry alone cannot tell left from right
(or above from below); :func:`normalized_box_features` gives the model absolute positions.
Widths/heights are clamped to a tiny positive value so that degenerate boxes (or zero padding
boxes, which have ``w = h = 1``) never produce NaN; for real boxes this changes nothing.
"""
from __future__ import annotations

import torch
from torch import Tensor

CENTER_OFFSET_FLOOR = 1e-3  # MMnas: log(max(offset / size, 1e-3))
MIN_BOX_SIZE = 1e-6  # pixels; only degenerate boxes are affected


def _check_boxes(boxes: Tensor) -> None:
    if boxes.dim() != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [B, N, 4] pixels (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        raise ValueError(f"boxes must be a float tensor, got {boxes.dtype}")


def box_relation_geometry(boxes: Tensor) -> Tensor:
    """``[B, N, 4]`` pixel boxes -> ``[B, N, N, 4]`` log-ratio geometry of every (query, key) pair."""
    _check_boxes(boxes)
    x1, y1, x2, y2 = boxes.unbind(-1)
    w = (x2 - x1 + 1.0).clamp(min=MIN_BOX_SIZE)
    h = (y2 - y1 + 1.0).clamp(min=MIN_BOX_SIZE)
    cx = (x1 + x2) * 0.5
    cy = (y1 + y2) * 0.5
    dx = (cx[:, :, None] - cx[:, None, :]).abs() / w[:, :, None]
    dy = (cy[:, :, None] - cy[:, None, :]).abs() / h[:, :, None]
    log_w, log_h = w.log(), h.log()
    return torch.stack(
        (
            dx.clamp(min=CENTER_OFFSET_FLOOR).log(),
            dy.clamp(min=CENTER_OFFSET_FLOOR).log(),
            log_w[:, :, None] - log_w[:, None, :],
            log_h[:, :, None] - log_h[:, None, :],
        ),
        dim=-1,
    )


def normalized_box_features(boxes: Tensor, image_size: Tensor) -> Tensor:
    """``[B, N, 4]`` pixel boxes + ``[B, 2]`` (height, width) -> ``[B, N, 5]``
    ``(x1/W, y1/H, x2/W, y2/H, box area / image area)`` (MMnas's ``bbox_feat``)."""
    _check_boxes(boxes)
    if tuple(image_size.shape) != (boxes.shape[0], 2):
        raise ValueError(f"image_size must be [B, 2] (height, width) pixels, got shape {tuple(image_size.shape)}")
    height = image_size[:, 0, None].to(boxes.dtype)
    width = image_size[:, 1, None].to(boxes.dtype)
    x1, y1, x2, y2 = boxes.unbind(-1)
    area = (x2 - x1) * (y2 - y1) / (width * height)
    return torch.stack((x1 / width, y1 / height, x2 / width, y2 / height, area), dim=-1)
