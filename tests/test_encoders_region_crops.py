"""Region crops: geometry, context margin, clipping, speed of the vectorised path."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

from mmsearch.data.crops import crop_regions, expand_and_clip_boxes


@pytest.fixture(scope="module")
def quadrants() -> Image.Image:
    """200x100 image: left half red, right half blue, bottom-right quarter green."""
    pixels = np.zeros((100, 200, 3), dtype=np.uint8)
    pixels[:, :100] = (255, 0, 0)
    pixels[:, 100:] = (0, 0, 255)
    pixels[50:, 100:] = (0, 255, 0)
    return Image.fromarray(pixels)


def test_crops_take_the_boxed_pixels(quadrants):
    boxes = np.array([[10, 10, 90, 90], [110, 5, 190, 45], [120, 60, 180, 95]], dtype=np.float32)
    crops = crop_regions(quadrants, boxes, size=16)
    assert crops.shape == (3, 3, 16, 16) and crops.dtype == torch.uint8
    means = crops.float().mean(dim=(2, 3))
    torch.testing.assert_close(means, torch.tensor([[255.0, 0, 0], [0, 0, 255], [0, 255, 0]]))


def test_context_margin_and_clipping():
    out = expand_and_clip_boxes(np.array([[50, 20, 70, 60], [-30, -5, 10, 500]]), width=100, height=80, context=0.5)
    np.testing.assert_allclose(out[0], [40, 0, 80, 80])  # +10 / +20 per side, then clipped to y in [0, 80]
    np.testing.assert_allclose(out[1], [0, 0, 30, 80])
    degenerate = expand_and_clip_boxes(np.array([[100, 10, 100, 10], [150, 150, 160, 160]]), 100, 80, 0.1)
    assert ((degenerate[:, 2] - degenerate[:, 0]) >= 1).all() and ((degenerate[:, 3] - degenerate[:, 1]) >= 1).all()
    assert (degenerate[:, [0, 2]] <= 100).all() and (degenerate[:, [1, 3]] <= 80).all()


def test_context_brings_in_neighbouring_pixels(quadrants):
    box = np.array([[80, 10, 100, 40]])  # red, touching the blue half
    tight = crop_regions(quadrants, box, size=8).float().mean(dim=(2, 3))[0]
    wide = crop_regions(quadrants, box, size=8, context=0.5).float().mean(dim=(2, 3))[0]
    assert tight[2] < 10 and wide[2] > 40  # x 70..110: a quarter of the crop is blue (the filter bleeds < 1 px)


def test_accepts_tensors_and_non_rgb_images_and_empty_box_lists(quadrants):
    grey = quadrants.convert("L")
    crops = crop_regions(grey, torch.tensor([[0.0, 0.0, 50.0, 50.0]]), size=4)
    assert crops.shape == (1, 3, 4, 4) and (crops[:, 0] == crops[:, 1]).all()
    assert crop_regions(quadrants, np.zeros((0, 4)), size=4).shape == (0, 3, 4, 4)


def test_bad_boxes_fail_clearly(quadrants):
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        crop_regions(quadrants, np.zeros((3, 5)), size=8)
    with pytest.raises(ValueError, match="NaN"):
        crop_regions(quadrants, np.array([[0, 0, np.nan, 10]]), size=8)
    with pytest.raises(ValueError, match="context"):
        crop_regions(quadrants, np.array([[0, 0, 10, 10]]), size=8, context=-0.1)


def test_thousands_of_crops_per_second(quadrants):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, [150, 60], size=(2000, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 50, size=(2000, 2))], axis=1)
    start = time.process_time()
    crops = crop_regions(quadrants, boxes, size=64, context=0.1)
    elapsed = time.process_time() - start
    assert crops.shape == (2000, 3, 64, 64)
    assert elapsed < 2.0, f"{2000 / elapsed:.0f} crops/s"  # 20k crops well under a minute, even on 2 busy cores
