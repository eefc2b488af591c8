"""VQA questions of the scene data set: correct, robust, balanced, and not answerable from text.

Correctness and robustness are checked with the independent oracle of ``test_scenes_oracle``.
The balance bounds: a model that ignores the image can at best learn the answer distribution
per question wording, so we bound (a) the majority-answer share per family (the accuracy of a
per-family prior) and (b) the accuracy of the majority answer per exact question text, learnt on
train and applied to test (the strongest text-only prior that needs no model).
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict

import numpy as np
import pytest
from test_scenes_oracle import (
    COLOURS,
    SHAPES,
    answer,
    dataset,
    is_relational,
    objects_of,
    scenes_by_id,
)

from mmsearch.data.scenes import answer_vocabulary

FAMILY_TYPES = {
    "exist": {"yes/no"},
    "count": {"number"},
    "attribute": {"other"},
    "compare": {"yes/no"},
    "relation": {"yes/no", "number", "other"},
}


@pytest.fixture(scope="module")
def data():
    cfg, splits = dataset()
    return cfg, splits, scenes_by_id(cfg, splits)


def _all_questions(splits):
    return [q for part in splits.values() for q in part.vqa]


def test_every_answer_is_rederived_by_the_independent_oracle(data):
    cfg, splits, scenes = data
    questions = _all_questions(splits)
    assert len(questions) == cfg.questions_per_image * cfg.num_scenes  # every scene gets its quota
    for q in questions:
        assert list(q.answers.values()) == [1.0]
        (expected,) = q.answers
        assert answer(objects_of(scenes[q.image_id]), q.question) == expected, q


def test_answers_do_not_hinge_on_near_ties(data):
    """Moving every object by up to 1.5 px (less than the generator's margin) changes no answer."""
    _, splits, scenes = data
    rng = np.random.default_rng(0)
    for q in splits["val"].vqa:
        scene = scenes[q.image_id]
        shift = {k: tuple(rng.uniform(-1.5, 1.5, size=2)) for k in range(len(scene.objects))}
        (expected,) = q.answers
        assert answer(objects_of(scene, shift), q.question) == expected, q


def test_families_and_answer_types(data):
    _, splits, _ = data
    seen = defaultdict(set)
    for q in _all_questions(splits):
        seen[q.family].add(q.answer_type)
        assert q.question.endswith("?") and len(q.question.split()) <= 14  # MMnas pads to 14 tokens
    assert dict(seen) == FAMILY_TYPES


def test_yes_no_is_balanced_within_every_family(data):
    _, splits, _ = data
    for family in ("exist", "compare", "relation"):
        answers = [next(iter(q.answers)) for q in _all_questions(splits) if q.family == family and q.answer_type == "yes/no"]
        assert len(answers) > 150
        share = answers.count("yes") / len(answers)
        assert 0.4 <= share <= 0.6, f"{family}: yes share {share:.2f}"


def test_majority_answer_share_per_family_is_bounded(data):
    """Bounds: yes/no families 0.6 (balanced two-way); counting spreads over 8 answers, so 0.3;
    attribute (8 colours, 5 shapes, 2 sizes) and relation (all answer types) 0.35."""
    _, splits, _ = data
    bounds = {"exist": 0.6, "compare": 0.6, "count": 0.3, "attribute": 0.35, "relation": 0.35}
    for family, bound in bounds.items():
        answers = Counter(next(iter(q.answers)) for q in _all_questions(splits) if q.family == family)
        share = answers.most_common(1)[0][1] / sum(answers.values())
        assert share <= bound, f"{family}: majority answer share {share:.2f} > {bound}"


def test_counts_colours_and_shapes_are_spread(data):
    _, splits, _ = data
    answers = Counter(next(iter(q.answers)) for q in _all_questions(splits))
    counts = {n: answers[str(n)] for n in range(8)}
    total = sum(counts.values())
    assert all(counts[n] / total >= 0.05 for n in range(5)), counts  # 0..4 each at least 5%
    assert counts[5] + counts[6] + counts[7] > 0
    # Roughly uniform. Answers of one scene share its palette, so 300 scenes leave ~+-30% noise
    # on a share (over 1500 scenes all colour shares lie within 0.116..0.139 of 1/8).
    for vocab in (COLOURS, SHAPES):
        shares = np.array([answers[v] for v in vocab], float)
        shares /= shares.sum()
        uniform = 1 / len(vocab)
        assert shares.min() >= 0.4 * uniform and shares.max() <= 1.6 * uniform, dict(zip(vocab, shares.round(3)))


def _template(question: str) -> str:
    """The wording with attribute words masked: what a template-level prior conditions on."""
    words = [("<C>" if w in COLOURS else "<S>" if w.rstrip("s?") in SHAPES else w) for w in question.split()]
    return re.sub(r"\b(small|large)\b", "<Z>", " ".join(words))


def test_question_only_priors_are_far_from_perfect(data):
    _, splits, _ = data
    by_text, by_template = defaultdict(Counter), defaultdict(Counter)
    for q in splits["train"].vqa:
        (a,) = q.answers
        by_text[q.question][a] += 1
        by_template[_template(q.question)][a] += 1
    hits_text, hits_template = defaultdict(list), defaultdict(list)
    for q in splits["test"].vqa:
        (a,) = q.answers
        template = by_template.get(_template(q.question), Counter({"yes": 1}))
        known = by_text.get(q.question) or template
        hits_text[q.family].append(known.most_common(1)[0][0] == a)
        hits_template[q.family].append(template.most_common(1)[0][0] == a)
    overall_text = np.mean([h for hs in hits_text.values() for h in hs])
    overall_template = np.mean([h for hs in hits_template.values() for h in hs])
    assert overall_text < 0.5 and overall_template < 0.5, (overall_text, overall_template)
    for family, hits in hits_text.items():
        assert np.mean(hits) < 0.7, f"{family}: question-only accuracy {np.mean(hits):.2f}"


def test_relational_questions_need_the_relation(data):
    """Answered as if the relation were not there, most relational questions come out wrong or
    open: queries always (several candidates with different answers), counts always, and
    existence questions whenever the answer is no."""
    _, splits, scenes = data
    relational = [q for q in _all_questions(splits) if q.family == "relation"]
    assert all(is_relational(q.question) for q in relational)
    differs = defaultdict(list)
    for q in relational:
        (a,) = q.answers
        blind = answer(objects_of(scenes[q.image_id]), q.question, ignore_relation=True)
        differs[q.answer_type].append(blind != a)
    assert np.mean(differs["other"]) == 1.0
    assert np.mean(differs["number"]) == 1.0
    assert 0.35 <= np.mean(differs["yes/no"]) <= 0.65
    assert np.mean([d for ds in differs.values() for d in ds]) > 0.6


def test_answer_vocabulary_is_sorted_by_train_frequency(data):
    _, splits, _ = data
    vocab = answer_vocabulary(splits["train"])
    counts = Counter(a for q in splits["train"].vqa for a in q.answers)
    assert set(vocab) == set(counts)
    assert [counts[a] for a in vocab] == sorted(counts.values(), reverse=True)
    assert vocab[:2] == ["yes", "no"] or vocab[:2] == ["no", "yes"]
    rare = answer_vocabulary(splits["train"], min_count=counts[vocab[-1]] + 1)
    assert vocab[-1] not in rare and len(rare) < len(vocab)
    assert set(answer_vocabulary(splits["test"])) <= set(vocab)  # test answers are all known
