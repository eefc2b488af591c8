"""Scene sampling: objects with colour, shape, size and a position, placed without overlap.

A scene is a pure function of ``(seed, index)`` and the scene-level config fields: every random
draw comes from a ``numpy.random.Generator`` seeded with ``[seed, index, stream]``, one stream per
purpose (world, render, proposals, questions, captions, referring expressions), so a scene and
its records never depend on how many other scenes were generated or on the other streams.

Each scene draws a small palette (2-4 colours and 2-4 shapes out of the full vocabulary) and its
objects from that palette, so attributes repeat inside a scene: counts spread beyond 0/1, and
many objects can only be singled out by an attribute combination or a spatial relation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from enum import IntEnum
from types import MappingProxyType

import numpy as np

from mmsearch.data.scenes.config import SceneConfig

# Reference fill colours (RGB 0-255); rendered objects are jittered around these.
COLOURS = MappingProxyType(
    {
        "red": (214, 39, 40),
        "green": (44, 160, 44),
        "blue": (31, 90, 214),
        "yellow": (240, 208, 30),
        "purple": (136, 64, 186),
        "orange": (255, 137, 14),
        "gray": (120, 120, 120),
        "cyan": (23, 200, 214),
    }
)
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond")
SIZES: tuple[str, ...] = ("small", "large")

# Object extent (side of the bounding square) as a fraction of the image side, per size class.
SIZE_EXTENT = MappingProxyType({"small": (0.10, 0.13), "large": (0.18, 0.23)})
COLOUR_JITTER = 12  # +- per RGB channel around the reference colour
STAR_INNER_RATIO = 0.45  # inner / outer radius of the five-pointed star


class Stream(IntEnum):
    """Independent random streams of one scene."""

    WORLD = 0
    RENDER = 1
    PROPOSALS = 2
    QUESTIONS = 3
    CAPTIONS = 4
    REFS = 5


def scene_rng(seed: int, index: int, stream: Stream) -> np.random.Generator:
    return np.random.default_rng([seed, index, int(stream)])


def image_id_of(index: int) -> str:
    return f"scene_{index:06d}"


def index_of(image_id: str) -> int:
    prefix, _, digits = image_id.partition("_")
    if prefix != "scene" or not digits.isdigit():
        raise ValueError(f"not a scene image id: {image_id!r} (expected 'scene_000123')")
    return int(digits)


def shape_outline(shape: str, cx: float, cy: float, extent: float) -> list[tuple[float, float]]:
    """Polygon vertices (pixels) of a non-circular shape inscribed in an ``extent`` square."""
    h = extent / 2
    if shape == "square":
        s = 0.84 * h  # a bit smaller than the frame, so its area matches the circle's
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "diamond":
        return [(cx, cy - h), (cx + 0.8 * h, cy), (cx, cy + h), (cx - 0.8 * h, cy)]
    if shape == "triangle":
        return [(cx, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "star":
        points = []
        for k in range(10):
            radius = h if k % 2 == 0 else STAR_INNER_RATIO * h
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    raise ValueError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}")


def shape_box(shape: str, cx: float, cy: float, extent: float) -> tuple[float, float, float, float]:
    """Tight pixel box (x1, y1, x2, y2) of the drawn shape."""
    if shape == "circle":
        h = extent / 2
        return (cx - h, cy - h, cx + h, cy + h)
    xs, ys = zip(*shape_outline(shape, cx, cy, extent))
    return (min(xs), min(ys), max(xs), max(ys))


@dataclass(frozen=True)
class SceneObject:
    colour: str
    shape: str
    size: str
    cx: float  # centre of the shape's frame, pixels
    cy: float
    extent: float  # side of the square frame the shape is inscribed in, pixels
    rgb: tuple[int, int, int]  # jittered fill colour actually drawn
    box: tuple[float, float, float, float]  # tight pixel box of the drawn shape

    @cached_property
    def center(self) -> tuple[float, float]:
        """Centre of the box: what spatial relations compare (what a detector would see)."""
        x1, y1, x2, y2 = self.box
        return ((x1 + x2) / 2, (y1 + y2) / 2)

    def attribute(self, kind: str) -> str:
        """The value of attribute ``kind`` ("colour", "shape" or "size")."""
        if kind not in ("colour", "shape", "size"):
            raise ValueError(f"unknown attribute kind {kind!r}")
        return getattr(self, kind)


@dataclass(frozen=True)
class Scene:
    seed: int
    index: int
    width: int
    height: int
    objects: tuple[SceneObject, ...]
    background: tuple[int, int, int]  # base RGB of the (textured) background

    @property
    def image_id(self) -> str:
        return image_id_of(self.index)


def _boxes_clear(box: tuple[float, ...], placed: list[tuple[float, ...]], gap: float) -> bool:
    x1, y1, x2, y2 = box
    for a1, b1, a2, b2 in placed:
        if x1 < a2 + gap and a1 < x2 + gap and y1 < b2 + gap and b1 < y2 + gap:
            return False
    return True


def _place(
    rng: np.random.Generator, shapes: list[str], extents: list[float], side: int
) -> list[tuple[float, float, tuple[float, float, float, float]]] | None:
    """Rejection-sample non-overlapping positions (largest first); None if the scene jammed."""
    gap, border = max(3.0, 0.03 * side), 2.0
    order = sorted(range(len(shapes)), key=lambda i: -extents[i])
    placed: dict[int, tuple[float, float, tuple[float, float, float, float]]] = {}
    for i in order:
        half = extents[i] / 2
        for _ in range(200):
            cx, cy = rng.uniform(border + half, side - border - half, size=2)
            box = shape_box(shapes[i], float(cx), float(cy), extents[i])
            if _boxes_clear(box, [p[2] for p in placed.values()], gap):
                placed[i] = (float(cx), float(cy), box)
                break
        else:
            return None
    return [placed[i] for i in range(len(shapes))]


def sample_scene(cfg: SceneConfig, index: int) -> Scene:
    """The scene with this index, a pure function of ``(cfg.seed, index)`` and the scene fields."""
    if index < 0:
        raise ValueError(f"scene index must be >= 0, got {index}")
    rng = scene_rng(cfg.seed, index, Stream.WORLD)
    side = cfg.image_size
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    palette_colours = rng.choice(len(COLOUR_NAMES), size=min(n, int(rng.integers(2, 5))), replace=False)
    palette_shapes = rng.choice(len(SHAPES), size=min(n, int(rng.integers(2, 5))), replace=False)
    colours = [COLOUR_NAMES[i] for i in rng.choice(palette_colours, size=n)]
    shapes = [SHAPES[i] for i in rng.choice(palette_shapes, size=n)]
    sizes = [SIZES[i] for i in rng.integers(0, len(SIZES), size=n)]
    extents = [float(rng.uniform(*SIZE_EXTENT[s])) * side for s in sizes]
    jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=(n, 3))
    background = tuple(int(v) for v in rng.integers(185, 236, size=3))

    # Crowded scenes can jam; retry, and shrink all objects a little (sizes keep their class
    # ordering) after every ten failed attempts.
    for attempt in range(100):
        scale = 0.92 ** (attempt // 10)
        placement = _place(rng, shapes, [e * scale for e in extents], side)
        if placement is not None:
            break
    else:  # pragma: no cover - unreachable for validated configs
        raise RuntimeError(f"could not place {n} objects in a {side}px scene (index {index})")
    objects = tuple(
        SceneObject(
            colour=colours[i],
            shape=shapes[i],
            size=sizes[i],
            cx=cx,
            cy=cy,
            extent=extents[i] * scale,
            rgb=tuple(int(v) for v in np.clip(np.array(COLOURS[colours[i]]) + jitter[i], 0, 255)),
            box=box,
        )
        for i, (cx, cy, box) in enumerate(placement)
    )
    return Scene(seed=cfg.seed, index=index, width=side, height=side, objects=objects, background=background)
