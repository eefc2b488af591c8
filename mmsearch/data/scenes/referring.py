"""Visual grounding data: referring expressions that pick out exactly one object.

Families (``RefRecord.family``):

* ``attribute``: an attribute combination that only the target has ("the small red shape",
  "the large blue square");
* ``relation``: a description several objects share, made unique by a relation to a uniquely
  described anchor ("the circle left of the blue square", "the red shape closest to the star");
* ``spatial``: a shared description made unique by an extreme position ("the leftmost circle",
  "the lowest red shape").

Every expression is checked to denote exactly one object, with relations and extremes decided by
a clear margin (see :mod:`mmsearch.data.scenes.relations`). Relational and spatial expressions
are only used where the description alone is ambiguous, so the relation is always needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from mmsearch.data.records import RefRecord
from mmsearch.data.scenes import relations
from mmsearch.data.scenes.facts import SceneFacts
from mmsearch.data.scenes.world import Scene

REF_FAMILIES: tuple[str, ...] = ("attribute", "relation", "spatial")
# Draws per family: relations dominate, as the task is about more than attribute lookup.
FAMILY_WEIGHTS = MappingProxyType({"attribute": 0.25, "relation": 0.5, "spatial": 0.25})


@dataclass(frozen=True)
class Expression:
    family: str
    text: str
    target: int  # index of the object in scene.objects


def _attribute(f: SceneFacts) -> list[Expression]:
    return [Expression("attribute", d.the(), i) for i in range(f.n) for d in f.unique(i)]


def _relation(f: SceneFacts) -> list[Expression]:
    out = []
    for anchor, anchor_phrase in f.anchors:
        for target in range(f.n):
            if target == anchor:
                continue
            for d in f.descriptors_of(target):
                matching = f.mask(d) & ~(1 << anchor)
                if matching.bit_count() < 2:
                    continue  # the description alone would do
                for rel in relations.RELATIONS:
                    if f.related(rel, anchor, matching) == 1 << target:
                        out.append(Expression("relation", f"{d.the()} {rel} {anchor_phrase}", target))
                if f.closest(anchor, matching) == target:
                    out.append(Expression("relation", f"{d.the()} closest to {anchor_phrase}", target))
    return out


def _spatial(f: SceneFacts) -> list[Expression]:
    out = []
    for target in range(f.n):
        for d in f.descriptors_of(target):
            matching = f.mask(d)
            if matching.bit_count() < 2:
                continue
            for word in relations.EXTREMES:
                if f.extreme(word, matching) == target:
                    out.append(Expression("spatial", f"the {word} {d.words()}", target))
    return out


_ENUMERATORS = MappingProxyType({"attribute": _attribute, "relation": _relation, "spatial": _spatial})


def generate_expressions(scene: Scene, num_expressions: int, rng: np.random.Generator) -> list[Expression]:
    """Up to ``num_expressions`` distinct expressions; families drawn by ``FAMILY_WEIGHTS``,
    targets spread over the objects (an unused target is preferred)."""
    f = SceneFacts(scene, rng)
    candidates: dict[str, list[Expression]] = {}
    weights = np.array([FAMILY_WEIGHTS[k] for k in REF_FAMILIES])
    out: list[Expression] = []
    for _ in range(num_expressions):
        first = REF_FAMILIES[int(rng.choice(len(REF_FAMILIES), p=weights / weights.sum()))]
        for family in (first, *(k for k in REF_FAMILIES if k != first)):
            if family not in candidates:
                candidates[family] = _ENUMERATORS[family](f)
            used_texts = {e.text for e in out}
            fresh = [e for e in candidates[family] if e.text not in used_texts]
            if not fresh:
                continue
            used_targets = {e.target for e in out}
            targets = sorted({e.target for e in fresh if e.target not in used_targets} or {e.target for e in fresh})
            target = targets[int(rng.integers(len(targets)))]
            out.append(f.choice([e for e in fresh if e.target == target]))
            break
        else:
            break
    return out


def to_records(scene: Scene, expressions: list[Expression]) -> list[RefRecord]:
    return [
        RefRecord(
            ref_id=f"{scene.image_id}_r{k}",
            image_id=scene.image_id,
            expression=e.text,
            target_box=tuple(float(v) for v in scene.objects[e.target].box),
            family=e.family,
        )
        for k, e in enumerate(expressions)
    ]
