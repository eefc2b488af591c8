"""Image-text matching data: true captions with hard negatives that differ in one detail.

Each caption is a conjunction of clauses over the scene (total count, existence, exact counts,
spatial relations, attribute bindings); its text is rendered from the clauses by one template
per caption kind:

* ``overview``:   "a picture of five shapes including a large red circle and a blue star"
* ``horizontal``: "the small red circle is left of the blue square"
* ``vertical``:   "the green triangle is above the large star"
* ``count``:      "there are two red shapes and one small circle"
* ``binding``:    "the large circle is red and the small green object is a star"

A hard negative changes exactly one thing (a colour, shape or size word, a relation, a number)
and is kept only if it makes the caption *false for this scene* under the same clause semantics
(an "a ..."/"the ..." description is true of any object matching it, so a negative must fail for
every object it could describe, and relations must fail by a clear margin). Swapped-in values
are preferred from the scene's own attributes, so negatives are not spotted by odd words alone.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

from mmsearch.data.records import CaptionRecord
from mmsearch.data.scenes import relations
from mmsearch.data.scenes.descriptors import ATTRIBUTE_VALUES, Descriptor, number_word
from mmsearch.data.scenes.facts import SceneFacts
from mmsearch.data.scenes.world import Scene

CAPTION_KINDS: tuple[str, ...] = ("overview", "horizontal", "vertical", "count", "binding")


# -- clauses and their truth ------------------------------------------------------------------
@dataclass(frozen=True)
class Clause:
    """One statement about the scene. ``op`` selects the semantics:

    * ``total``:  the scene has ``number`` objects
    * ``exists``: some object matches ``a``
    * ``count``:  exactly ``number`` objects match ``a``
    * ``rel``:    some object matching ``a`` is <``rel``> some other object matching ``b``
    * ``has``:    some object matching ``a`` has attribute ``kind`` = ``value``
    """

    op: str
    a: Descriptor | None = None
    b: Descriptor | None = None
    rel: str = ""
    number: int = 0
    kind: str = ""
    value: str = ""


def clause_truth(f: SceneFacts, c: Clause) -> bool | None:
    """True / False, or None when it hinges on a relation within the ambiguity margin."""
    if c.op == "total":
        return f.n == c.number
    if c.op == "exists":
        return f.mask(c.a) != 0
    if c.op == "count":
        return f.mask(c.a).bit_count() == c.number
    if c.op == "has":
        return any(getattr(f.objects[i], c.kind) == c.value for i in f.members(f.mask(c.a)))
    if c.op == "rel":
        verdicts = {
            relations.holds(c.rel, f.objects[i], f.objects[j], f.margin)
            for i in f.members(f.mask(c.a))
            for j in f.members(f.mask(c.b))
            if i != j
        }
        return True if True in verdicts else (None if None in verdicts else False)
    raise ValueError(f"unknown clause op {c.op!r}")


def truth(f: SceneFacts, clauses: tuple[Clause, ...]) -> bool | None:
    verdicts = [clause_truth(f, c) for c in clauses]
    if False in verdicts:
        return False
    return None if None in verdicts else True


# -- wording ------------------------------------------------------------------------------------
def _numbered(n: int, d: Descriptor) -> str:
    return f"{number_word(n)} {d.words(plural=n != 1)}"


def _text(kind: str, clauses: tuple[Clause, ...]) -> str:
    if kind == "overview":
        total, *items = clauses
        return f"a picture of {number_word(total.number)} shapes including " + " and ".join(c.a.a() for c in items)
    if kind in ("horizontal", "vertical"):
        (c,) = clauses
        return f"{c.a.the()} is {c.rel} {c.b.the()}"
    if kind == "count":
        verb = "is" if clauses[0].number == 1 else "are"
        return f"there {verb} " + " and ".join(_numbered(c.number, c.a) for c in clauses)
    if kind == "binding":
        x, y = clauses
        return f"{x.a.the()} is {x.value} and {y.a.the('object')} is {Descriptor(shape=y.value).a()}"
    raise ValueError(f"unknown caption kind {kind!r}")


@dataclass(frozen=True)
class Caption:
    kind: str
    clauses: tuple[Clause, ...]
    text: str
    hard_negatives: tuple[str, ...]


# -- positive captions ------------------------------------------------------------------------
def _pick_object_descriptor(f: SceneFacts, i: int, min_arity: int) -> Descriptor:
    return f.choice([d for d in f.descriptors_of(i) if d.arity >= min_arity])


def _overview(f: SceneFacts) -> tuple[Clause, ...]:
    """Total count and two objects; one object where the two picked could be the same one
    ("a blue circle and a blue shape"), e.g. in scenes of look-alike objects."""
    i, j = (int(k) for k in f.rng.choice(f.n, size=2, replace=f.n < 2))
    x, y = _pick_object_descriptor(f, i, 2), _pick_object_descriptor(f, j, 2)
    items = (x,) if f.mask(x) & f.mask(y) else (x, y)
    return (Clause("total", number=f.n), *(Clause("exists", a=d) for d in items))


def _relation(f: SceneFacts, rels: tuple[str, str]) -> tuple[Clause, ...] | None:
    nameable = [i for i in range(f.n) if f.unique(i)]
    options = [
        (i, j)
        for i in nameable
        for j in nameable
        if i != j and relations.holds(rels[0], f.objects[i], f.objects[j], f.margin) is not None
    ]
    if not options:
        return None
    i, j = f.choice(options)
    rel = rels[0] if relations.holds(rels[0], f.objects[i], f.objects[j], f.margin) else rels[1]
    return (Clause("rel", a=f.choice(f.unique(i)), b=f.choice(f.unique(j)), rel=rel),)


def _count(f: SceneFacts) -> tuple[Clause, ...]:
    """Exact counts of two disjoint groups, or of one group if the scene has no two."""
    pool = [d for d in f.present_descriptors if d.arity >= 1]
    pairs = [(x, y) for x in pool for y in pool if not f.mask(x) & f.mask(y)]
    groups = f.choice(pairs) if pairs else (f.choice(pool),)
    return tuple(Clause("count", a=d, number=f.mask(d).bit_count()) for d in groups)


def _binding(f: SceneFacts) -> tuple[Clause, ...] | None:
    colour_ok = [i for i in range(f.n) if f.unique(i, ("colour",))]
    shape_ok = [i for i in range(f.n) if f.unique(i, ("shape",))]
    pairs = [(i, j) for i in colour_ok for j in shape_ok if i != j]
    if not pairs:
        return None
    i, j = f.choice(pairs)
    return (
        Clause("has", a=f.choice(f.unique(i, ("colour",))), kind="colour", value=f.objects[i].colour),
        Clause("has", a=f.choice(f.unique(j, ("shape",))), kind="shape", value=f.objects[j].shape),
    )


_BUILDERS: Mapping[str, Callable[[SceneFacts], tuple[Clause, ...] | None]] = MappingProxyType(
    {
        "overview": _overview,
        "horizontal": lambda f: _relation(f, ("left of", "right of")),
        "vertical": lambda f: _relation(f, ("above", "below")),
        "count": _count,
        "binding": _binding,
    }
)


# -- hard negatives -----------------------------------------------------------------------------
def _one_swaps(clauses: tuple[Clause, ...], count_range: tuple[int, int]) -> list[tuple[str, tuple[Clause, ...]]]:
    """Every caption differing from ``clauses`` in one detail, as (what changed, clauses).

    Numbers stay inside ``count_range`` (totals) or 1..max (counts), so that a negative is not
    given away by a number no true caption ever has.
    """
    out = []
    for k, c in enumerate(clauses):

        def put(new: Clause, what: str) -> None:
            out.append((what, clauses[:k] + (new,) + clauses[k + 1 :]))

        for field in ("a", "b"):
            d = getattr(c, field)
            if d is None:
                continue
            for kind in ("size", "colour", "shape"):
                if d.get(kind) is None:
                    continue
                for value in ATTRIBUTE_VALUES[kind]:
                    if value != d.get(kind):
                        put(replace(c, **{field: d.with_value(kind, value)}), kind)
        if c.op == "rel":
            put(replace(c, rel=relations.OPPOSITE[c.rel]), "relation")
        if c.op == "has":
            for value in ATTRIBUTE_VALUES[c.kind]:
                if value != c.value:
                    put(replace(c, value=value), c.kind)
        if c.op in ("total", "count"):
            low, high = (count_range if c.op == "total" else (1, count_range[1]))
            for number in (c.number - 1, c.number + 1):
                if low <= number <= high:
                    put(replace(c, number=number), "number")
    return out


def _swapped_values(original: tuple[Clause, ...], swapped: tuple[Clause, ...]) -> set[str]:
    """Attribute words that appear in ``swapped`` but not in ``original``."""

    def words(cs: tuple[Clause, ...]) -> set[str]:
        out = set()
        for c in cs:
            for d in (c.a, c.b):
                if d is not None:
                    out |= {v for v in (d.size, d.colour, d.shape) if v}
            if c.value:
                out.add(c.value)
        return out

    return words(swapped) - words(original)


def _self_referential(clauses: tuple[Clause, ...]) -> bool:
    """"the blue shape is left of the blue shape", "a red circle and a red circle"."""
    descriptions = [c.a for c in clauses if c.op in ("exists", "count")]
    return any(c.op == "rel" and c.a == c.b for c in clauses) or len(set(descriptions)) < len(descriptions)


def hard_negatives(
    f: SceneFacts, kind: str, clauses: tuple[Clause, ...], limit: int, count_range: tuple[int, int]
) -> list[str]:
    """Up to ``limit`` false one-detail variants, covering as many kinds of change as possible."""
    by_what: dict[str, list[tuple[bool, str]]] = {}
    seen = set()
    for what, variant in _one_swaps(clauses, count_range):
        if _self_referential(variant) or truth(f, variant) is not False:
            continue
        text = _text(kind, variant)
        if text in seen:
            continue
        seen.add(text)
        plausible = all(v in f.present for v in _swapped_values(clauses, variant))
        by_what.setdefault(what, []).append((plausible, text))
    chosen: list[str] = []
    whats = sorted(by_what)
    for idx in f.rng.permutation(len(whats)):
        options = by_what[whats[int(idx)]]
        preferred = [t for p, t in options if p] or [t for _, t in options]
        chosen.append(f.choice(preferred))
        if len(chosen) == limit:
            break
    return chosen


# -- per scene ----------------------------------------------------------------------------------
def generate_captions(
    scene: Scene,
    num_captions: int,
    negatives_per_caption: int,
    rng: np.random.Generator,
    count_range: tuple[int, int],
) -> list[Caption]:
    """``num_captions`` distinct true captions of different kinds (kinds repeat only if a scene
    cannot support some kind), each with 1..``negatives_per_caption`` hard negatives."""
    f = SceneFacts(scene, rng)
    order = [CAPTION_KINDS[int(k)] for k in rng.permutation(len(CAPTION_KINDS))]
    out: list[Caption] = []
    texts: set[str] = set()
    for attempt in range(8 * len(CAPTION_KINDS)):
        if len(out) == num_captions:
            break
        kind = order[attempt % len(order)]
        clauses = _BUILDERS[kind](f)
        if clauses is None or truth(f, clauses) is not True:
            continue
        text = _text(kind, clauses)
        negatives = hard_negatives(f, kind, clauses, negatives_per_caption, count_range)
        if text in texts or not negatives:
            continue
        out.append(Caption(kind, clauses, text, tuple(negatives)))
        texts.add(text)
    return out


def to_records(image_id: str, captions: list[Caption]) -> list[CaptionRecord]:
    return [
        CaptionRecord(caption_id=f"{image_id}_c{k}", image_id=image_id, caption=c.text, hard_negatives=c.hard_negatives)
        for k, c in enumerate(captions)
    ]
