"""An independent oracle for the scene data set, and tests of the oracle itself.

The oracle re-derives answers, caption truth and referents from the *text* of a record and the
ground-truth objects (colour, shape, size, box), with its own parser and its own plain geometry:
centres are box centres, "a left of b" is ``a.cx < b.cx``, "closest" is the smallest centre
distance. It shares no code path with the generator (which decides relations with a margin and
builds texts from templates), so agreement between the two is evidence that both are right. The
other ``test_scenes_*`` modules import it; ``dataset()`` caches one build per configuration for
the whole test session.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import pytest

from mmsearch.data.scenes import SceneConfig, build_scene_dataset, scene_of

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "gray", "cyan")
SHAPES = ("circle", "square", "triangle", "star", "diamond")
SIZES = ("small", "large")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
RELS = ("left of", "right of", "above", "below")
EXTREMES = ("leftmost", "rightmost", "topmost", "lowest")

# A noun phrase: optional size, optional colour, a shape or a generic noun, maybe plural.
NP = rf"(?:(?:{'|'.join(SIZES)}) )?(?:(?:{'|'.join(COLOURS)}) )?(?:{'|'.join(SHAPES)}|shape|object)s?"
REL = "|".join(RELS)


@dataclass(frozen=True)
class Obj:
    colour: str
    shape: str
    size: str
    box: tuple[float, float, float, float]

    @property
    def cx(self) -> float:
        return (self.box[0] + self.box[2]) / 2

    @property
    def cy(self) -> float:
        return (self.box[1] + self.box[3]) / 2


def objects_of(scene, shift: dict[int, tuple[float, float]] | None = None) -> list[Obj]:
    """The oracle's view of a scene; ``shift`` moves boxes (to test robustness to tiny moves)."""
    out = []
    for k, o in enumerate(scene.objects):
        dx, dy = (shift or {}).get(k, (0.0, 0.0))
        x1, y1, x2, y2 = o.box
        out.append(Obj(o.colour, o.shape, o.size, (x1 + dx, y1 + dy, x2 + dx, y2 + dy)))
    return out


class Unparsed(AssertionError):
    pass


def parse_np(text: str):
    """Noun phrase -> predicate over objects."""
    words = text.split()
    noun = words[-1]
    if noun.endswith("s") and noun[:-1] in (*SHAPES, "shape", "object"):
        noun = noun[:-1]
    size = next((w for w in words[:-1] if w in SIZES), None)
    colour = next((w for w in words[:-1] if w in COLOURS), None)
    shape = noun if noun in SHAPES else None
    return lambda o: (size is None or o.size == size) and (colour is None or o.colour == colour) and (
        shape is None or o.shape == shape
    )


def select(objs: list[Obj], np_text: str) -> list[Obj]:
    pred = parse_np(np_text)
    return [o for o in objs if pred(o)]


def the(objs: list[Obj], np_text: str) -> Obj:
    hits = select(objs, np_text)
    assert len(hits) == 1, f"'the {np_text}' matches {len(hits)} objects"
    return hits[0]


def rel_holds(rel: str, a: Obj, b: Obj) -> bool:
    return {"left of": a.cx < b.cx, "right of": a.cx > b.cx, "above": a.cy < b.cy, "below": a.cy > b.cy}[rel]


def dist(a: Obj, b: Obj) -> float:
    return math.hypot(a.cx - b.cx, a.cy - b.cy)


def nearest(anchor: Obj, pool: list[Obj]) -> Obj:
    ranked = sorted((o for o in pool if o is not anchor), key=lambda o: dist(o, anchor))
    assert len(ranked) == 1 or dist(ranked[1], anchor) > dist(ranked[0], anchor), "tie for closest"
    return ranked[0]


def extreme(word: str, pool: list[Obj]) -> Obj:
    key = {"leftmost": lambda o: o.cx, "rightmost": lambda o: -o.cx, "topmost": lambda o: o.cy, "lowest": lambda o: -o.cy}[word]
    return min(pool, key=key)


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def attr(o: Obj, kind: str) -> str:
    return {"colour": o.colour, "shape": o.shape, "size": o.size}[kind]


# -- VQA -------------------------------------------------------------------------------------------
def answer(objs: list[Obj], q: str, ignore_relation: bool = False) -> str:
    """The answer to question ``q``. With ``ignore_relation``, relational questions are answered
    as if the relation were not there ("ambiguous" when that leaves several answers)."""
    m = re.fullmatch(rf"is there an? ({NP})\?", q)
    if m:
        return yes_no(bool(select(objs, m[1])))
    m = re.fullmatch(rf"how many ({NP}) are there\?", q)
    if m:
        return str(len(select(objs, m[1])))
    m = re.fullmatch(rf"what (colour|shape|size) is the ({NP})\?", q)
    if m:
        return attr(the(objs, m[2]), m[1])
    m = re.fullmatch(rf"are there (more|fewer) ({NP}) than ({NP})\?", q)
    if m:
        a, b = len(select(objs, m[2])), len(select(objs, m[3]))
        return yes_no(a > b if m[1] == "more" else a < b)
    m = re.fullmatch(rf"are there as many ({NP}) as ({NP})\?", q)
    if m:
        return yes_no(len(select(objs, m[1])) == len(select(objs, m[2])))
    m = re.fullmatch(rf"is the ({NP}) (larger|smaller) than the ({NP})\?", q)
    if m:
        a, b = the(objs, m[1]), the(objs, m[3])
        bigger, smaller = ("large", "small") if m[2] == "larger" else ("small", "large")
        return yes_no(a.size == bigger and b.size == smaller)
    m = re.fullmatch(rf"are the ({NP}) and the ({NP}) the same (colour|shape|size)\?", q)
    if m:
        return yes_no(attr(the(objs, m[1]), m[3]) == attr(the(objs, m[2]), m[3]))
    m = re.fullmatch(rf"what (colour|shape) is the ({NP}) ({REL}) the ({NP})\?", q)
    if m:
        anchor = the(objs, m[4])
        pool = [o for o in select(objs, m[2]) if o is not anchor]
        if ignore_relation:
            values = {attr(o, m[1]) for o in pool}
            return values.pop() if len(values) == 1 else "ambiguous"
        hits = [o for o in pool if rel_holds(m[3], o, anchor)]
        assert len(hits) == 1, f"{q!r}: {len(hits)} referents"
        return attr(hits[0], m[1])
    m = re.fullmatch(rf"is there an? ({NP}) ({REL}) the ({NP})\?", q)
    if m:
        anchor = the(objs, m[3])
        pool = [o for o in select(objs, m[1]) if o is not anchor]
        return yes_no(any(ignore_relation or rel_holds(m[2], o, anchor) for o in pool))
    m = re.fullmatch(rf"how many ({NP}) are ({REL}) the ({NP})\?", q)
    if m:
        anchor = the(objs, m[3])
        pool = [o for o in select(objs, m[1]) if o is not anchor]
        return str(sum(ignore_relation or rel_holds(m[2], o, anchor) for o in pool))
    m = re.fullmatch(rf"what (?:(colour) is the shape|(shape) is) closest to the ({NP})\?", q)
    if m:
        kind = m[1] or m[2]
        anchor = the(objs, m[3])
        others = [o for o in objs if o is not anchor]
        if ignore_relation:
            values = {attr(o, kind) for o in others}
            return values.pop() if len(values) == 1 else "ambiguous"
        return attr(nearest(anchor, others), kind)
    raise Unparsed(f"oracle cannot parse question {q!r}")


def is_relational(q: str) -> bool:
    return bool(re.search(rf" ({REL}|closest to) the ", q))


# -- ITM ---------------------------------------------------------------------------------------------
def caption_template(c: str) -> str:
    for name, pattern in CAPTION_PATTERNS.items():
        if re.fullmatch(pattern, c):
            return name
    raise Unparsed(f"oracle cannot parse caption {c!r}")


NUM = "|".join(NUMBERS)
CAPTION_PATTERNS = {
    "overview": rf"a picture of ({NUM}) shapes including an? ({NP})(?: and an? ({NP}))?",
    "relation": rf"the ({NP}) is ({REL}) the ({NP})",
    "count": rf"there (?:is|are) ({NUM}) ({NP})(?: and ({NUM}) ({NP}))?",
    "binding": rf"the ({NP}) is ({'|'.join(COLOURS)}) and the ({NP}) is an? ({'|'.join(SHAPES)})",
}


def caption_true(objs: list[Obj], c: str, require_unique: bool = False) -> bool:
    """Existential truth of a caption ("the X" / "a X": some X). ``require_unique`` also asserts
    that every "the X" names exactly one object (the presupposition of a true caption)."""
    kind = caption_template(c)
    m = re.fullmatch(CAPTION_PATTERNS[kind], c)
    if kind == "overview":
        return len(objs) == NUMBERS.index(m[1]) and all(select(objs, g) for g in (m[2], m[3]) if g)
    if kind == "count":
        groups = [(m[1], m[2]), (m[3], m[4])] if m[3] else [(m[1], m[2])]
        return all(len(select(objs, g)) == NUMBERS.index(n) for n, g in groups)
    if kind == "relation":
        if require_unique:
            the(objs, m[1]), the(objs, m[3])
        return any(rel_holds(m[2], a, b) for a in select(objs, m[1]) for b in select(objs, m[3]) if a is not b)
    if require_unique:
        the(objs, m[1]), the(objs, m[3])
    return any(o.colour == m[2] for o in select(objs, m[1])) and any(o.shape == m[4] for o in select(objs, m[3]))


# -- VG ----------------------------------------------------------------------------------------------
def referent(objs: list[Obj], e: str) -> tuple[Obj, int]:
    """The object an expression denotes (asserting it is unique), and how many objects its bare
    noun phrase matches (>= 2 means the relation / extreme was needed)."""
    m = re.fullmatch(rf"the ({NP}) ({REL}) the ({NP})", e)
    if m:
        anchor = the(objs, m[3])
        pool = [o for o in select(objs, m[1]) if o is not anchor]
        hits = [o for o in pool if rel_holds(m[2], o, anchor)]
        assert len(hits) == 1, f"{e!r}: {len(hits)} referents"
        return hits[0], len(pool)
    m = re.fullmatch(rf"the ({NP}) closest to the ({NP})", e)
    if m:
        anchor = the(objs, m[2])
        pool = [o for o in select(objs, m[1]) if o is not anchor]
        return nearest(anchor, pool), len(pool)
    m = re.fullmatch(rf"the ({'|'.join(EXTREMES)}) ({NP})", e)
    if m:
        pool = select(objs, m[2])
        return extreme(m[1], pool), len(pool)
    m = re.fullmatch(rf"the ({NP})", e)
    if m:
        return the(objs, m[1]), 1
    raise Unparsed(f"oracle cannot parse expression {e!r}")


def iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


# -- shared data -------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def dataset(num_scenes: int = 300, seed: int = 0):
    """(config, splits) built once per test session for each configuration."""
    cfg = SceneConfig(num_scenes=num_scenes, seed=seed)
    return cfg, build_scene_dataset(cfg)


def scenes_by_id(cfg, splits) -> dict:
    return {iid: scene_of(cfg, iid) for part in splits.values() for iid in part.images}


# -- tests of the oracle on a hand-made scene --------------------------------------------------------
def _toy() -> list[Obj]:
    # red circle (left, top), blue square (right, top), small blue circle (middle, bottom)
    return [
        Obj("red", "circle", "large", (10, 10, 40, 40)),
        Obj("blue", "square", "large", (80, 10, 110, 40)),
        Obj("blue", "circle", "small", (50, 90, 64, 104)),
    ]


@pytest.mark.parametrize(
    "question, expected",
    [
        ("is there a red circle?", "yes"),
        ("is there a red square?", "no"),
        ("how many blue shapes are there?", "2"),
        ("how many circles are there?", "2"),
        ("how many shapes are there?", "3"),
        ("what colour is the square?", "blue"),
        ("what size is the blue circle?", "small"),
        ("what shape is the red object?", "circle"),
        ("are there more blue shapes than red shapes?", "yes"),
        ("are there as many circles as squares?", "no"),
        ("is the red circle larger than the blue circle?", "yes"),
        ("are the red shape and the square the same size?", "yes"),
        ("what colour is the circle left of the square?", "ambiguous"),  # with ignore_relation below
        ("what colour is the circle below the square?", "blue"),
        ("is there a circle right of the square?", "no"),
        ("how many shapes are left of the square?", "2"),
        ("what shape is closest to the red circle?", "square"),
        ("what colour is the shape closest to the square?", "red"),
        ("what colour is the shape closest to the small circle?", "red"),
    ],
)
def test_oracle_answers_hand_made_scene(question, expected):
    objs = _toy()
    if expected == "ambiguous":
        assert answer(objs, question, ignore_relation=True) == "ambiguous"
        with pytest.raises(AssertionError, match="2 referents"):
            answer(objs, question)
    else:
        assert answer(objs, question) == expected


def test_oracle_rejects_what_it_cannot_parse_and_non_unique_references():
    with pytest.raises(Unparsed):
        answer(_toy(), "what is the meaning of this?")
    with pytest.raises(AssertionError, match="matches 2 objects"):
        answer(_toy(), "what colour is the circle?")


def test_oracle_captions_and_expressions_on_hand_made_scene():
    objs = _toy()
    assert caption_true(objs, "the red circle is left of the square", require_unique=True)
    assert not caption_true(objs, "the red circle is right of the square")
    assert caption_true(objs, "there are two circles and one square")
    assert caption_true(objs, "there are two blue shapes")
    assert not caption_true(objs, "a picture of three shapes including a small red shape")
    assert not caption_true(objs, "there is one circle and one square")
    assert caption_true(objs, "a picture of three shapes including a small circle and a red shape")
    assert caption_true(objs, "the large circle is red and the small blue object is a circle")
    assert not caption_true(objs, "the large circle is blue and the small blue object is a circle")
    assert referent(objs, "the circle right of the red circle") == (objs[2], 1)
    assert referent(objs, "the leftmost circle") == (objs[0], 2)
    assert referent(objs, "the shape closest to the small circle")[0] == objs[0]
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
