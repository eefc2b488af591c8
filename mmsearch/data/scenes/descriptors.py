"""Object descriptions ("the small red circle", "blue shapes") and how they are worded.

A :class:`Descriptor` fixes any subset of size, colour and shape; it matches the objects that
have those attributes. Every question, caption and referring expression is built from
descriptors, so uniqueness ("exactly one object matches") is checked in one place.
"""
from __future__ import annotations

import itertools
from types import MappingProxyType
from typing import Iterable, NamedTuple, Sequence

from mmsearch.data.scenes.world import COLOUR_NAMES, SHAPES, SIZES, SceneObject

ATTRIBUTE_VALUES = MappingProxyType({"size": SIZES, "colour": COLOUR_NAMES, "shape": SHAPES})
KINDS: tuple[str, ...] = ("size", "colour", "shape")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


class Descriptor(NamedTuple):
    """A tuple (cheap hashing: descriptors key the per-scene memo tables)."""

    size: str | None = None
    colour: str | None = None
    shape: str | None = None

    def matches(self, obj: SceneObject) -> bool:
        return (
            (self.size is None or obj.size == self.size)
            and (self.colour is None or obj.colour == self.colour)
            and (self.shape is None or obj.shape == self.shape)
        )

    def select(self, objects: Iterable[SceneObject]) -> list[SceneObject]:
        return [o for o in objects if self.matches(o)]

    def get(self, kind: str) -> str | None:
        return getattr(self, kind)

    def with_value(self, kind: str, value: str | None) -> "Descriptor":
        return self._replace(**{kind: value})

    @property
    def arity(self) -> int:
        return (self.size is not None) + (self.colour is not None) + (self.shape is not None)

    def words(self, noun: str = "shape", plural: bool = False) -> str:
        """"small red circle", "red shape" (noun stands in for a missing shape), pluralised."""
        head = self.shape or noun
        if plural:
            head += "s"
        return " ".join(w for w in (self.size, self.colour, head) if w)

    def the(self, noun: str = "shape") -> str:
        return "the " + self.words(noun)

    def a(self, noun: str = "shape") -> str:
        phrase = self.words(noun)
        return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def of(obj: SceneObject, kinds: Iterable[str]) -> Descriptor:
    """The descriptor of ``obj`` restricted to the given attribute kinds."""
    return Descriptor(**{k: obj.attribute(k) for k in kinds})


def all_descriptors(min_arity: int = 0, max_arity: int = 3, exclude: Sequence[str] = ()) -> list[Descriptor]:
    """Every descriptor over the full vocabulary with ``min_arity..max_arity`` attributes set,
    never setting the attribute kinds in ``exclude``."""
    options = [(None, *ATTRIBUTE_VALUES[k]) if k not in exclude else (None,) for k in KINDS]
    out = []
    for size, colour, shape in itertools.product(*options):
        d = Descriptor(size, colour, shape)
        if min_arity <= d.arity <= max_arity:
            out.append(d)
    return out


def object_descriptors(obj: SceneObject, exclude: Sequence[str] = ()) -> list[Descriptor]:
    """All descriptors that match ``obj`` (any subset of its attributes outside ``exclude``)."""
    kinds = [k for k in KINDS if k not in exclude]
    return [of(obj, subset) for r in range(len(kinds) + 1) for subset in itertools.combinations(kinds, r)]


def unique_descriptors(
    obj: SceneObject, objects: Sequence[SceneObject], exclude: Sequence[str] = ()
) -> list[Descriptor]:
    """Descriptors (not using ``exclude``) that match ``obj`` and no other object of the scene."""
    return [d for d in object_descriptors(obj, exclude) if d.arity and len(d.select(objects)) == 1]


def number_word(n: int) -> str:
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)
