"""Region crops for a frozen image encoder: boxes of one image -> uint8 [N, 3, size, size].

Each box (pixels, x1 y1 x2 y2) is widened by ``context`` times its width/height on every side
(a little surrounding context helps a CNN recognise small objects), clipped to the image, and
resampled straight from the source pixels to ``size x size`` with Pillow's antialiased filter
(``Image.resize(..., box=...)`` crops and resizes in one pass, with sub-pixel box edges). The
aspect ratio is not kept: every region fills the square, as detector RoI features do.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

MIN_SIDE = 1.0  # pixels; degenerate boxes are grown to this around their centre


def expand_and_clip_boxes(boxes: np.ndarray, width: int, height: int, context: float) -> np.ndarray:
    """Widen boxes by ``context`` of their size per side, clip to the image, keep >= 1 pixel sides."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 0.0)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 0.0)
    out = np.stack(
        [boxes[:, 0] - context * w, boxes[:, 1] - context * h, boxes[:, 2] + context * w, boxes[:, 3] + context * h],
        axis=1,
    )
    limits = np.array([width, height, width, height], dtype=np.float64)
    out = np.clip(out, 0.0, limits)
    for lo, hi, size in ((0, 2, width), (1, 3, height)):
        short = out[:, hi] - out[:, lo] < MIN_SIDE
        centre = np.clip((out[short, lo] + out[short, hi]) / 2, MIN_SIDE / 2, size - MIN_SIDE / 2)
        out[short, lo] = centre - MIN_SIDE / 2
        out[short, hi] = centre + MIN_SIDE / 2
    return out


def crop_regions(
    image: Image.Image,
    boxes: np.ndarray | torch.Tensor,
    size: int,
    context: float = 0.0,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> torch.Tensor:
    """Crops of ``boxes`` [N, 4] (pixels x1 y1 x2 y2) from ``image``, uint8 [N, 3, size, size].

    ``context`` is the margin added on each side as a fraction of the box's width/height
    (0.1 = 10 %). Boxes are clipped to the image; empty ones become 1-pixel crops.
    """
    if size < 1:
        raise ValueError(f"crop size must be >= 1 pixel, got {size}")
    if not 0.0 <= context <= 1.0:
        raise ValueError(f"context must be a fraction in [0, 1], got {context}")
    if isinstance(boxes, torch.Tensor):
        boxes = boxes.detach().cpu().numpy()
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4] (x1, y1, x2, y2 pixels); got {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes contain NaN or infinite values")
    out = np.empty((boxes.shape[0], size, size, 3), dtype=np.uint8)
    if boxes.shape[0]:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        rgb.load()
        regions = expand_and_clip_boxes(boxes, rgb.width, rgb.height, context)
        for i, box in enumerate(regions):
            out[i] = np.asarray(rgb.resize((size, size), resample, box=tuple(float(v) for v in box)))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
