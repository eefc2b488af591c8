"""Memoised per-scene lookups shared by the question, caption and expression generators.

Objects are referred to by index and sets of objects by bit masks (bit ``i`` = object ``i``), so
that enumerating every description x anchor x relation of a scene stays cheap.
"""
from __future__ import annotations

from functools import cached_property
from typing import Sequence, TypeVar

import numpy as np

from mmsearch.data.scenes import relations
from mmsearch.data.scenes.descriptors import Descriptor, object_descriptors
from mmsearch.data.scenes.world import Scene, SceneObject

T = TypeVar("T")


class SceneFacts:
    def __init__(self, scene: Scene, rng: np.random.Generator) -> None:
        self.scene = scene
        self.rng = rng
        self.objects: tuple[SceneObject, ...] = scene.objects
        self.n = len(scene.objects)
        self.all = (1 << self.n) - 1
        self.margin = relations.margin(scene)
        self._masks: dict[Descriptor, int] = {}
        self._unique: dict[tuple[int, tuple[str, ...]], list[Descriptor]] = {}
        self._sides: dict[tuple[int, str], tuple[int, int]] = {}
        self._descriptors: dict[tuple[int, tuple[str, ...]], list[Descriptor]] = {}

    # -- random choice -------------------------------------------------------------------------
    def choice(self, options: Sequence[T]) -> T:
        return options[int(self.rng.integers(len(options)))]

    # -- descriptions --------------------------------------------------------------------------
    @cached_property
    def present(self) -> frozenset[str]:
        return frozenset(getattr(o, k) for o in self.objects for k in ("size", "colour", "shape"))

    def plausible(self, d: Descriptor) -> bool:
        """Every attribute the description names occurs in the scene (maybe on different objects)."""
        return all(v in self.present for v in (d.size, d.colour, d.shape) if v is not None)

    def mask(self, d: Descriptor) -> int:
        """Bit mask of the objects matching ``d``."""
        m = self._masks.get(d)
        if m is None:
            m = sum(1 << i for i, o in enumerate(self.objects) if d.matches(o))
            self._masks[d] = m
        return m

    def members(self, mask: int) -> list[int]:
        return [i for i in range(self.n) if mask >> i & 1]

    def values(self, mask: int, kind: str) -> set[str]:
        return {getattr(self.objects[i], kind) for i in self.members(mask)}

    def descriptors_of(self, i: int, exclude: tuple[str, ...] = ()) -> list[Descriptor]:
        """Every description of object ``i`` (any subset of its attributes outside ``exclude``)."""
        key = (i, exclude)
        if key not in self._descriptors:
            self._descriptors[key] = object_descriptors(self.objects[i], exclude)
        return self._descriptors[key]

    def unique(self, i: int, exclude: tuple[str, ...] = ()) -> list[Descriptor]:
        """Descriptions (not naming ``exclude``) that pick out object ``i`` and nothing else."""
        key = (i, exclude)
        if key not in self._unique:
            self._unique[key] = [d for d in self.descriptors_of(i, exclude) if d.arity and self.mask(d) == 1 << i]
        return self._unique[key]

    def unique_phrase(self, i: int, exclude: tuple[str, ...] = (), noun: str = "shape") -> str | None:
        """"the ..." naming object ``i`` uniquely (a random one of its unique descriptions)."""
        options = self.unique(i, exclude)
        return self.choice(options).the(noun) if options else None

    @cached_property
    def anchors(self) -> list[tuple[int, str]]:
        """Uniquely describable objects, each with one fixed (random) unique phrase."""
        out = []
        for i in range(self.n):
            phrase = self.unique_phrase(i)
            if phrase is not None:
                out.append((i, phrase))
        return out

    @cached_property
    def present_descriptors(self) -> list[Descriptor]:
        """Descriptions with at most two attributes that match some object, in a fixed order."""
        found = {d for o in self.objects for d in object_descriptors(o) if d.arity <= 2}
        return sorted(found, key=lambda d: d.words())

    @cached_property
    def present_phrases(self) -> list[tuple[Descriptor, int, str, str]]:
        """``present_descriptors`` with their masks, "a ..." and plural wordings (precomputed)."""
        return [(d, self.mask(d), d.a(), d.words(plural=True)) for d in self.present_descriptors]

    # -- spatial relations -----------------------------------------------------------------------
    def side(self, anchor: int, rel: str) -> tuple[int, int]:
        """(mask of objects clearly <rel> the anchor, mask of objects undecided), anchor excluded."""
        key = (anchor, rel)
        if key not in self._sides:
            yes = undecided = 0
            a = self.objects[anchor]
            for j, obj in enumerate(self.objects):
                if j != anchor:
                    verdict = relations.holds(rel, obj, a, self.margin)
                    if verdict is None:
                        undecided |= 1 << j
                    elif verdict:
                        yes |= 1 << j
            self._sides[key] = (yes, undecided)
        return self._sides[key]

    def related(self, rel: str, anchor: int, mask: int) -> int | None:
        """Objects of ``mask`` (anchor dropped) that are <rel> the anchor; None if any is undecided."""
        yes, undecided = self.side(anchor, rel)
        mask &= ~(1 << anchor)
        if mask & undecided:
            return None
        return mask & yes

    def closest(self, anchor: int, mask: int) -> int | None:
        """Index of the object of ``mask`` clearly nearest to the anchor, if any."""
        pool = [self.objects[j] for j in self.members(mask & ~(1 << anchor))]
        hit = relations.closest(self.objects[anchor], pool, self.margin)
        return None if hit is None else self.objects.index(hit)

    def extreme(self, word: str, mask: int) -> int | None:
        """Index of the clearly leftmost / rightmost / topmost / lowest object of ``mask``."""
        hit = relations.extreme(word, [self.objects[j] for j in self.members(mask)], self.margin)
        return None if hit is None else self.objects.index(hit)
