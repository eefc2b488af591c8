"""Candidate regions of an image, imitating the output of an object detector.

Per object, 1..``max_per_object`` boxes jittered in position and scale; the first one always
overlaps the object with IoU >= ``GOOD_IOU`` (so every object can be grounded), the others may
be poorer (partial or loose crops). Then distractors: background boxes anywhere in the image
and boxes straddling two neighbouring objects. All boxes are clipped to the image, at least
``MIN_SIDE`` pixels wide and high, shuffled (the order says nothing about objects) and capped
at ``max_regions``, keeping one good box per object. These regions are the image's regions for
every task: their crops are what the frozen image encoder sees.
"""
from __future__ import annotations

import numpy as np

from mmsearch.data.scenes.world import Scene

GOOD_IOU = 0.6  # the guaranteed proposal of every object overlaps it at least this much
MIN_SIDE = 4.0  # pixels


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a [N, 4]`` and ``b [M, 4]`` (x1, y1, x2, y2) -> ``[N, M]``."""
    a, b = np.asarray(a, np.float64)[:, None, :], np.asarray(b, np.float64)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def _clip(box: np.ndarray, width: int, height: int) -> np.ndarray:
    x1, y1, x2, y2 = box
    x1, x2 = np.clip([x1, x2], 0, width)
    y1, y2 = np.clip([y1, y2], 0, height)
    if x2 - x1 < MIN_SIDE:  # grow a degenerate box around its centre, inside the image
        c = np.clip((x1 + x2) / 2, MIN_SIDE / 2, width - MIN_SIDE / 2)
        x1, x2 = c - MIN_SIDE / 2, c + MIN_SIDE / 2
    if y2 - y1 < MIN_SIDE:
        c = np.clip((y1 + y2) / 2, MIN_SIDE / 2, height - MIN_SIDE / 2)
        y1, y2 = c - MIN_SIDE / 2, c + MIN_SIDE / 2
    return np.array([x1, y1, x2, y2])


def _jitter(rng: np.random.Generator, box: np.ndarray, shift: float, scale: float) -> np.ndarray:
    """Move the centre by N(0, shift * side) and rescale each side by exp(N(0, scale))."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2 + rng.normal(0, shift * w)
    cy = (y1 + y2) / 2 + rng.normal(0, shift * h)
    w, h = w * np.exp(rng.normal(0, scale)), h * np.exp(rng.normal(0, scale))
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def _good_box(rng: np.random.Generator, box: np.ndarray, width: int, height: int) -> np.ndarray:
    for _ in range(50):
        cand = _clip(_jitter(rng, box, 0.08, 0.12), width, height)
        if box_iou(cand[None], box[None])[0, 0] >= GOOD_IOU:
            return cand
    return _clip(box.copy(), width, height)  # pragma: no cover - the jitter is far smaller


def propose_regions(
    scene: Scene,
    rng: np.random.Generator,
    *,
    max_regions: int,
    max_per_object: int,
    max_distractors: int,
) -> np.ndarray:
    """Proposal boxes ``[N, 4]`` float32 in pixels, ``N <= max_regions``."""
    w, h = scene.width, scene.height
    boxes = [np.asarray(o.box, np.float64) for o in scene.objects]
    good = [_good_box(rng, b, w, h) for b in boxes]
    extra = []
    for b in boxes:
        for _ in range(int(rng.integers(1, max_per_object + 1)) - 1):
            extra.append(_clip(_jitter(rng, b, 0.2, 0.3), w, h))
    n_distractors = int(rng.integers(0, max_distractors + 1))
    for _ in range(n_distractors):
        if len(boxes) >= 2 and rng.random() < 0.5:
            extra.append(_straddle(rng, boxes, w, h))
        else:
            extra.append(_background(rng, w, h))
    keep = max(0, max_regions - len(good))
    if len(extra) > keep:
        extra = [extra[int(i)] for i in rng.choice(len(extra), size=keep, replace=False)]
    out = np.stack(good + extra)[rng.permutation(len(good) + len(extra))]
    return out.astype(np.float32)


def _straddle(rng: np.random.Generator, boxes: list[np.ndarray], width: int, height: int) -> np.ndarray:
    """A loose box around an object and its nearest neighbour (a typical detector confusion)."""
    i = int(rng.integers(len(boxes)))
    centres = np.array([((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in boxes])
    dist = np.linalg.norm(centres - centres[i], axis=1)
    dist[i] = np.inf
    j = int(np.argmin(dist))
    union = np.array([min(boxes[i][0], boxes[j][0]), min(boxes[i][1], boxes[j][1]),
                      max(boxes[i][2], boxes[j][2]), max(boxes[i][3], boxes[j][3])])
    return _clip(_jitter(rng, union, 0.05, 0.1), width, height)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    side = rng.uniform(0.1, 0.4, size=2) * np.array([width, height])
    x1, y1 = rng.uniform(0, 1, size=2) * (np.array([width, height]) - side)
    return _clip(np.array([x1, y1, x1 + side[0], y1 + side[1]]), width, height)
