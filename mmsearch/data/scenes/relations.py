"""Spatial relations between objects, decided on box centres with an ambiguity margin.

"A left of B" means A's box centre is left of B's by more than a margin; within the margin the
relation is *undecided* (``None``) and generators skip anything whose answer would depend on an
undecided pair. Hence every generated relation holds, or fails, by a clear gap, and a checker
that compares plain centres (no margin) gets the same answer. Image y grows downwards, so
"above" means a smaller y.
"""
from __future__ import annotations

import math
from types import MappingProxyType
from typing import Sequence

from mmsearch.data.scenes.world import Scene, SceneObject

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
OPPOSITE = MappingProxyType({"left of": "right of", "right of": "left of", "above": "below", "below": "above"})
# word -> (axis, sign): the extreme object has the smallest sign * coordinate.
EXTREMES = MappingProxyType({"leftmost": (0, 1.0), "rightmost": (0, -1.0), "topmost": (1, 1.0), "lowest": (1, -1.0)})
CLOSEST_RATIO = 1.2  # second-nearest must be this much farther than the nearest


def margin(scene: Scene) -> float:
    """Minimum centre offset (pixels) for a relation to count as clear."""
    return max(3.0, 0.04 * scene.width)


def holds(rel: str, a: SceneObject, b: SceneObject, m: float) -> bool | None:
    """Is ``a`` <rel> ``b`` (e.g. a left of b)? ``None`` when the offset is within the margin."""
    (ax, ay), (bx, by) = a.center, b.center
    offset = {"left of": bx - ax, "right of": ax - bx, "above": by - ay, "below": ay - by}[rel]
    if offset > m:
        return True
    if offset < -m:
        return False
    return None


def related(rel: str, anchor: SceneObject, candidates: Sequence[SceneObject], m: float) -> list[SceneObject] | None:
    """Candidates (anchor excluded) that are <rel> the anchor; ``None`` if any is undecided."""
    out = []
    for obj in candidates:
        if obj is anchor:
            continue
        verdict = holds(rel, obj, anchor, m)
        if verdict is None:
            return None
        if verdict:
            out.append(obj)
    return out


def distance(a: SceneObject, b: SceneObject) -> float:
    (ax, ay), (bx, by) = a.center, b.center
    return math.hypot(ax - bx, ay - by)


def closest(anchor: SceneObject, candidates: Sequence[SceneObject], m: float) -> SceneObject | None:
    """The candidate nearest to the anchor, if it is clearly nearer than the runner-up."""
    others = sorted((o for o in candidates if o is not anchor), key=lambda o: distance(o, anchor))
    if not others:
        return None
    if len(others) > 1:
        d0, d1 = distance(others[0], anchor), distance(others[1], anchor)
        if d1 - d0 < m or d1 < CLOSEST_RATIO * d0:
            return None
    return others[0]


def extreme(word: str, candidates: Sequence[SceneObject], m: float) -> SceneObject | None:
    """The leftmost / rightmost / topmost / lowest candidate, if clearly ahead of the runner-up."""
    axis, sign = EXTREMES[word]
    ranked = sorted(candidates, key=lambda o: sign * o.center[axis])
    if not ranked:
        return None
    if len(ranked) > 1 and sign * (ranked[1].center[axis] - ranked[0].center[axis]) < m:
        return None
    return ranked[0]
