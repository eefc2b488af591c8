"""Answer-balanced choice among candidate items (questions, captions, expressions) of a scene.

Generators enumerate every valid candidate of a template for a scene; each candidate carries a
``group`` named ``"template/structure"`` (structure: e.g. how many attributes its description
uses) and an ``answer``. The choice is made in steps, so that the answer cannot be guessed from
the wording: a group is *eligible* if it offers at least two different answers in this scene (or
its answers are balanced across scenes by construction); pick a template uniformly among those
with an eligible group, then one of its eligible groups uniformly, then an answer among the
group's available answers (optionally weighted), then a candidate with that answer. Within a
group, each available answer is thus equally likely whatever the scene looks like.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

import numpy as np


@dataclass(frozen=True)
class Candidate:
    group: str  # template + structure; the unit of balancing
    text: str
    answer: str


C = TypeVar("C", bound=Candidate)


def pick_balanced(
    rng: np.random.Generator,
    candidates: Sequence[C],
    *,
    answer_weight: Callable[[str], float] = lambda answer: 1.0,
    prebalanced_groups: frozenset[str] = frozenset(),
    exclude_texts: frozenset[str] | set[str] = frozenset(),
) -> C | None:
    """One candidate chosen as described in the module docstring; None if no group qualifies."""
    by_group: dict[str, dict[str, list[C]]] = defaultdict(lambda: defaultdict(list))
    for cand in candidates:
        if cand.text not in exclude_texts:
            by_group[cand.group][cand.answer].append(cand)
    eligible = sorted(g for g, answers in by_group.items() if len(answers) >= 2 or g in prebalanced_groups)
    if not eligible:
        return None
    templates = sorted({g.split("/")[0] for g in eligible})
    template = templates[int(rng.integers(len(templates)))]
    groups = [g for g in eligible if g.split("/")[0] == template]
    answers = by_group[groups[int(rng.integers(len(groups)))]]
    keys = sorted(answers)
    weights = np.array([answer_weight(a) for a in keys], dtype=np.float64)
    answer = keys[int(rng.choice(len(keys), p=weights / weights.sum()))]
    options = answers[answer]
    return options[int(rng.integers(len(options)))]
