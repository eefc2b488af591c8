"""Render a scene to an RGB PIL image: textured background, anti-aliased flat-coloured shapes.

Shapes are drawn at ``supersample`` times the resolution into a mask and downsampled with a box
filter (anti-aliased edges), then composited over a background with a gentle gradient and pixel
noise, so that neither the background nor the crops around objects are trivially flat. The
noise comes from the scene's own render stream, so rendering is deterministic.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from mmsearch.data.scenes.world import Scene, Stream, scene_rng, shape_outline

BACKGROUND_NOISE_STD = 6.0  # per-pixel noise of the background, 0-255 units
GRADIENT_STRENGTH = 18.0  # peak-to-peak brightness change of the background gradient
SHAPE_NOISE_STD = 2.0  # light sensor-like noise over the whole image


def _background(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    h, w = scene.height, scene.width
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (np.cos(angle) * xs / w + np.sin(angle) * ys / h) * GRADIENT_STRENGTH
    base = np.asarray(scene.background, np.float32)[None, None, :]
    noise = rng.normal(0.0, BACKGROUND_NOISE_STD, size=(h, w, 3)).astype(np.float32)
    return base + (ramp - ramp.mean())[..., None] + noise


def render_scene(scene: Scene, supersample: int = 3) -> Image.Image:
    """The scene as an RGB image of ``scene.width x scene.height`` pixels."""
    rng = scene_rng(scene.seed, scene.index, Stream.RENDER)
    image = _background(scene, rng)
    k = supersample
    for obj in scene.objects:
        # Draw each object's mask only over its own (supersampled) box: cheap and exact.
        x1, y1, x2, y2 = obj.box
        ox, oy = max(int(np.floor(x1)) - 1, 0), max(int(np.floor(y1)) - 1, 0)
        ex, ey = min(int(np.ceil(x2)) + 1, scene.width), min(int(np.ceil(y2)) + 1, scene.height)
        mask = Image.new("L", ((ex - ox) * k, (ey - oy) * k), 0)
        draw = ImageDraw.Draw(mask)
        cx, cy, extent = (obj.cx - ox) * k, (obj.cy - oy) * k, obj.extent * k
        if obj.shape == "circle":
            r = extent / 2
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        else:
            draw.polygon(shape_outline(obj.shape, cx, cy, extent), fill=255)
        if k > 1:
            mask = mask.reduce(k)
        alpha = np.asarray(mask, np.float32)[..., None] / 255.0
        patch = image[oy:ey, ox:ex]
        image[oy:ey, ox:ex] = patch * (1.0 - alpha) + np.asarray(obj.rgb, np.float32) * alpha
    image += rng.normal(0.0, SHAPE_NOISE_STD, size=image.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8))  # HxWx3 uint8 -> RGB
