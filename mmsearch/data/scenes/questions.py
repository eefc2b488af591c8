"""VQA questions from templates, with VQA-v2 answer types and answer-balanced sampling.

Families (``VQARecord.family``) and their templates:

* ``exist`` (yes/no): "is there a small red circle?"
* ``count`` (number): "how many blue shapes are there?", "how many shapes are there?"
* ``attribute`` (other): "what colour is the large square?", "what shape is the green object?",
  "what size is the red circle?"
* ``compare`` (yes/no): "are there more red shapes than blue shapes?" (also fewer / as many),
  "is the red circle larger than the blue square?" (also smaller), "are the large circle and the
  small square the same colour?" (also shape / size)
* ``relation`` (all three types): "what colour is the shape left of the red circle?", "what shape
  is the red object above the blue star?", "is there a square below the green triangle?", "how
  many circles are right of the blue square?", "what shape is closest to the yellow star?"

Every referenced object ("the ..." in a question) is the only object matching its description.
Relational questions are only asked where the relation matters: the description alone matches
several objects with different answers, an existence question's description matches some object
(so the no answers are exactly the ones a relation-blind reader gets wrong), and a relational
count differs from the plain count. Answers are balanced per template by
:func:`mmsearch.data.scenes.sampling.pick_balanced`. Negatives of descriptions with two or more
attributes are "plausible" (every attribute named occurs in the scene, just not together), so
"no" and "0" are not given away by unusual wording.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from mmsearch.data.records import VQARecord
from mmsearch.data.scenes import relations
from mmsearch.data.scenes.descriptors import Descriptor, all_descriptors
from mmsearch.data.scenes.facts import SceneFacts
from mmsearch.data.scenes.sampling import Candidate, pick_balanced
from mmsearch.data.scenes.world import COLOUR_NAMES, SHAPES, Scene

FAMILIES: tuple[str, ...] = ("exist", "count", "attribute", "compare", "relation")
# One scene's questions cycle through these slots (relational questions get two).
FAMILY_SLOTS: tuple[str, ...] = ("exist", "count", "attribute", "compare", "relation", "relation")
# Noun standing in for the queried attribute's missing word: "what shape is the red object?"
QUERY_NOUN = MappingProxyType({"colour": "shape", "shape": "object", "size": "shape"})

_EXIST_DESCRIPTORS = all_descriptors(1, 3)
_COUNT_DESCRIPTORS = all_descriptors(1, 2)
_COMPARE_VALUES = MappingProxyType({"colour": COLOUR_NAMES, "shape": SHAPES})


@dataclass(frozen=True)
class Question(Candidate):
    answer_type: str
    family: str
    # Bit mask of the objects the answer is read from (bit i = object i): the grounding signal a
    # VQA head can be supervised with (``head.grounding_weight``). 0: nothing to point at (a "no"
    # to an existence question, a count of 0).
    referents: int = 0


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _exist(f: SceneFacts) -> list[Question]:
    out = []
    for d in _EXIST_DESCRIPTORS:
        present = f.mask(d) != 0
        if not present and d.arity > 1 and not f.plausible(d):
            continue
        out.append(Question(f"exist/{d.arity}", f"is there {d.a()}?", _yes_no(present), "yes/no", "exist", f.mask(d)))
    return out


def _count(f: SceneFacts) -> list[Question]:
    out = [Question("count/0", "how many shapes are there?", str(f.n), "number", "count", f.all)]
    for d in _COUNT_DESCRIPTORS:
        n = f.mask(d).bit_count()
        if n == 0 and d.arity > 1 and not f.plausible(d):
            continue
        text = f"how many {d.words(plural=True)} are there?"
        out.append(Question(f"count/{d.arity}", text, str(n), "number", "count", f.mask(d)))
    return out


def _attribute(f: SceneFacts) -> list[Question]:
    out = []
    for i, obj in enumerate(f.objects):
        for kind in ("colour", "shape", "size"):
            for d in f.unique(i, (kind,)):
                text = f"what {kind} is {d.the(QUERY_NOUN[kind])}?"
                out.append(Question(f"query_{kind}/{d.arity}", text, obj.attribute(kind), "other", "attribute", 1 << i))
    return out


def _compare(f: SceneFacts) -> list[Question]:
    out = []
    for kind, values in _COMPARE_VALUES.items():
        counts = {v: sum(o.attribute(kind) == v for o in f.objects) for v in values}
        for a, b in itertools.permutations(values, 2):
            ca, cb = counts[a], counts[b]
            if ca == cb == 0:
                continue
            da, db = Descriptor(**{kind: a}), Descriptor(**{kind: b})
            pa, pb, both = da.words(plural=True), db.words(plural=True), f.mask(da) | f.mask(db)
            out.append(Question(f"more/{kind}", f"are there more {pa} than {pb}?", _yes_no(ca > cb), "yes/no", "compare", both))
            out.append(Question(f"fewer/{kind}", f"are there fewer {pa} than {pb}?", _yes_no(ca < cb), "yes/no", "compare", both))
            if a < b:  # symmetric: ask one order only
                text = f"are there as many {pa} as {pb}?"
                out.append(Question(f"as_many/{kind}", text, _yes_no(ca == cb), "yes/no", "compare", both))
    for i, j in itertools.permutations(range(f.n), 2):
        a, b = f.objects[i], f.objects[j]
        pa, pb = f.unique_phrase(i, ("size",)), f.unique_phrase(j, ("size",))
        if pa and pb:
            larger, smaller = a.size == "large" and b.size == "small", a.size == "small" and b.size == "large"
            pair = 1 << i | 1 << j
            out.append(Question("larger", f"is {pa} larger than {pb}?", _yes_no(larger), "yes/no", "compare", pair))
            out.append(Question("smaller", f"is {pa} smaller than {pb}?", _yes_no(smaller), "yes/no", "compare", pair))
    for i, j in itertools.combinations(range(f.n), 2):
        for kind in ("colour", "shape", "size"):
            pa, pb = f.unique_phrase(i, (kind,), QUERY_NOUN[kind]), f.unique_phrase(j, (kind,), QUERY_NOUN[kind])
            if pa and pb:
                same = f.objects[i].attribute(kind) == f.objects[j].attribute(kind)
                text = f"are {pa} and {pb} the same {kind}?"
                out.append(Question(f"same_{kind}", text, _yes_no(same), "yes/no", "compare", 1 << i | 1 << j))
    return out


def _relation(f: SceneFacts) -> list[Question]:
    out = []
    for anchor, anchor_phrase in f.anchors:
        for rel in relations.RELATIONS:
            out += _relation_queries(f, anchor, anchor_phrase, rel)
            out += _relation_exist_count(f, anchor, anchor_phrase, rel)
        others = f.all & ~(1 << anchor)
        nearest = f.closest(anchor, others)
        if nearest is None:
            continue
        target = f.objects[nearest]
        for kind, text in (
            ("colour", f"what colour is the shape closest to {anchor_phrase}?"),
            ("shape", f"what shape is closest to {anchor_phrase}?"),
        ):
            if len(f.values(others, kind)) > 1:  # otherwise the relation would not be needed
                out.append(Question(f"closest_{kind}", text, target.attribute(kind), "other", "relation", 1 << nearest))
    return out


def _relation_queries(f: SceneFacts, anchor: int, anchor_phrase: str, rel: str) -> list[Question]:
    """"what colour is the shape left of the red circle?", where the description alone matches
    several objects with different answers."""
    out = []
    for kind in ("colour", "shape"):
        for target in range(f.n):
            if target == anchor:
                continue
            for d in f.descriptors_of(target, (kind,)):
                matching = f.mask(d) & ~(1 << anchor)
                if f.related(rel, anchor, matching) != 1 << target or len(f.values(matching, kind)) < 2:
                    continue
                text = f"what {kind} is {d.the(QUERY_NOUN[kind])} {rel} {anchor_phrase}?"
                answer = f.objects[target].attribute(kind)
                out.append(Question(f"rel_{kind}/{d.arity}", text, answer, "other", "relation", 1 << target))
    return out


def _relation_exist_count(f: SceneFacts, anchor: int, anchor_phrase: str, rel: str) -> list[Question]:
    """"is there a square above the red circle?" (some square exists elsewhere) and "how many
    squares are above the red circle?" (not all of them are)."""
    out = []
    for d, mask, a_phrase, plural_phrase in f.present_phrases:
        matching = mask & ~(1 << anchor)
        hits = f.related(rel, anchor, matching) if matching else None
        if hits is None:
            continue
        text = f"is there {a_phrase} {rel} {anchor_phrase}?"
        out.append(Question(f"rel_exist/{d.arity}", text, _yes_no(hits != 0), "yes/no", "relation", hits))
        if hits != matching:
            text = f"how many {plural_phrase} are {rel} {anchor_phrase}?"
            out.append(Question(f"rel_count/{d.arity}", text, str(hits.bit_count()), "number", "relation", hits))
    return out


_ENUMERATORS = MappingProxyType(
    {"exist": _exist, "count": _count, "attribute": _attribute, "compare": _compare, "relation": _relation}
)


def generate_questions(scene: Scene, num_questions: int, rng: np.random.Generator) -> list[Question]:
    """Up to ``num_questions`` distinct questions; fewer only if the scene runs out of templates."""
    facts = SceneFacts(scene, rng)
    slots = [FAMILY_SLOTS[i] for i in rng.permutation(len(FAMILY_SLOTS))]
    candidates: dict[str, list[Question]] = {}
    asked: set[str] = set()
    out: list[Question] = []
    for k in range(num_questions):
        preferred = slots[k % len(slots)]
        for family in (preferred, *(s for s in slots if s != preferred)):
            if family not in candidates:
                candidates[family] = _ENUMERATORS[family](facts)
            q = pick_balanced(rng, candidates[family], prebalanced_groups=frozenset({"count/0"}), exclude_texts=asked)
            if q is not None:
                break
        else:
            break
        asked.add(q.text)
        out.append(q)
    return out


def to_records(scene: Scene, questions: list[Question]) -> list[VQARecord]:
    """The questions of ``scene`` as records; each carries the boxes of its referents."""
    return [
        VQARecord(
            question_id=f"{scene.image_id}_q{k}",
            image_id=scene.image_id,
            question=q.text,
            answers={q.answer: 1.0},
            answer_type=q.answer_type,
            family=q.family,
            referent_boxes=tuple(obj.box for i, obj in enumerate(scene.objects) if q.referents >> i & 1),
        )
        for k, q in enumerate(questions)
    ]
