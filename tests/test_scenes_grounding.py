"""Visual grounding data of the scene data set: unique referents and detector-like proposals."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from test_scenes_oracle import dataset, iou, objects_of, referent, scenes_by_id

from mmsearch.data.scenes import SceneConfig, scene_records


@pytest.fixture(scope="module")
def data():
    cfg, splits = dataset()
    return cfg, splits, scenes_by_id(cfg, splits)


def _refs(splits):
    return [r for part in splits.values() for r in part.refs]


def test_every_expression_denotes_exactly_its_target(data):
    cfg, splits, scenes = data
    refs = _refs(splits)
    assert len(refs) == cfg.refs_per_image * cfg.num_scenes
    for r in refs:
        objs = objects_of(scenes[r.image_id])
        obj, _ = referent(objs, r.expression)  # asserts uniqueness
        assert obj.box == pytest.approx(r.target_box), r


def test_referents_do_not_hinge_on_near_ties(data):
    _, splits, scenes = data
    rng = np.random.default_rng(2)
    for r in splits["val"].refs:
        scene = scenes[r.image_id]
        shift = {k: tuple(rng.uniform(-1.5, 1.5, size=2)) for k in range(len(scene.objects))}
        target = next(k for k, o in enumerate(scene.objects) if o.box == pytest.approx(r.target_box))
        obj, _ = referent(objects_of(scene, shift), r.expression)
        assert obj == objects_of(scene, shift)[target], r


def test_most_expressions_need_a_relation_or_position(data):
    """Relational and spatial expressions are only used where the noun phrase alone matches
    several objects; together they are the majority."""
    _, splits, scenes = data
    families = Counter()
    for r in _refs(splits):
        _, candidates = referent(objects_of(scenes[r.image_id]), r.expression)
        families[r.family] += 1
        if r.family in ("relation", "spatial"):
            assert candidates >= 2, r
    assert set(families) == {"attribute", "relation", "spatial"}
    assert (families["relation"] + families["spatial"]) / sum(families.values()) > 0.6
    assert families["relation"] / sum(families.values()) > 0.35


def test_targets_are_spread_over_the_objects_of_an_image(data):
    _, splits, _ = data
    per_image = {}
    for r in _refs(splits):
        per_image.setdefault(r.image_id, []).append(r.target_box)
    distinct = [len(set(boxes)) for boxes in per_image.values()]
    assert np.mean(distinct) > 2.5  # of 3 expressions per image


def test_every_object_has_a_good_proposal_and_proposals_are_well_formed(data):
    cfg, splits, scenes = data
    for part in splits.values():
        for iid, img in part.images.items():
            boxes = img.proposals
            assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
            assert len(scenes[iid].objects) <= len(boxes) <= cfg.max_regions
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
            assert (boxes[:, 2] <= img.width).all() and (boxes[:, 3] <= img.height).all()
            assert ((boxes[:, 2] - boxes[:, 0]) >= 4).all() and ((boxes[:, 3] - boxes[:, 1]) >= 4).all()
            for obj in scenes[iid].objects:
                assert max(iou(b, obj.box) for b in boxes) >= 0.5, (iid, obj)


def test_proposals_include_noisy_duplicates_and_distractors(data):
    """Like a detector: several boxes per object, boxes on background and across two objects,
    and the best box of an object is usually not pixel-exact."""
    _, splits, scenes = data
    kinds = Counter()
    best = []
    for iid, img in splits["train"].images.items():
        objs = scenes[iid].objects
        for b in img.proposals:
            overlaps = sorted((iou(b, o.box) for o in objs), reverse=True)
            if overlaps[0] >= 0.5:
                kinds["object"] += 1
            elif overlaps[0] < 0.1:
                kinds["background"] += 1
            elif len(overlaps) > 1 and overlaps[1] > 0.05:
                kinds["straddling"] += 1
            else:
                kinds["partial"] += 1
        best += [max(iou(b, o.box) for b in img.proposals) for o in objs]
    total = sum(kinds.values())
    assert kinds["background"] > 0.05 * total and kinds["straddling"] > 0.03 * total, kinds
    assert kinds["object"] > 1.2 * sum(len(scenes[i].objects) for i in splits["train"].images), kinds
    assert 0.6 <= np.median(best) < 0.97


def test_region_cap_keeps_one_good_proposal_per_object():
    cfg = SceneConfig(num_scenes=10, max_regions=7, max_proposals_per_object=3, max_distractor_regions=6)
    for i in range(30):
        rec = scene_records(cfg, i)
        assert len(rec.image.proposals) <= 7
        for obj in rec.scene.objects:
            assert max(iou(b, obj.box) for b in rec.image.proposals) >= 0.5


def test_proposal_order_says_nothing_about_objects(data):
    """Shuffled: the first proposal is not systematically the first object's box."""
    _, splits, scenes = data
    first_is_first = [
        iou(img.proposals[0], scenes[iid].objects[0].box) >= 0.5 for iid, img in splits["train"].images.items()
    ]
    assert np.mean(first_is_first) < 0.4
