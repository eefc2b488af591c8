"""Scene sampling, rendering, determinism, splits and configuration of the embedded data set."""
from __future__ import annotations

import itertools
import pickle
import time
from collections import Counter

import numpy as np
import pytest
from test_scenes_oracle import answer, caption_true, dataset, objects_of, referent

from mmsearch.config import ConfigError, load_config
from mmsearch.data.scenes import (
    SceneConfig,
    build_scene_dataset,
    describe,
    render_scene,
    sample_scene,
    scene_of,
    scene_records,
)
from mmsearch.data.scenes.world import COLOURS, index_of


def _fingerprint(splits) -> dict:
    """Everything observable about a data set, in comparable form (pixels of a few images too)."""
    out = {}
    for name, part in splits.items():
        out[name] = (
            sorted(part.images),
            [img.proposals.tobytes() for img in part.images.values()],
            part.vqa,
            part.captions,
            part.refs,
            [np.asarray(img.render()).tobytes() for img in list(part.images.values())[:3]],
        )
    return out


def test_same_seed_gives_identical_records_and_pixels():
    cfg = SceneConfig(num_scenes=20, seed=3)
    assert _fingerprint(build_scene_dataset(cfg)) == _fingerprint(build_scene_dataset(cfg))


def test_different_seed_gives_different_data():
    a = _fingerprint(build_scene_dataset(SceneConfig(num_scenes=20, seed=3)))
    b = _fingerprint(build_scene_dataset(SceneConfig(num_scenes=20, seed=4)))
    for split in a:
        assert a[split][2] != b[split][2]  # questions
        assert a[split][5] != b[split][5]  # pixels


def test_a_scene_does_not_depend_on_how_many_scenes_are_generated():
    small, large = SceneConfig(num_scenes=10, seed=1), SceneConfig(num_scenes=500, seed=1)
    for index in (0, 7):
        assert sample_scene(small, index) == sample_scene(large, index)
        a, b = scene_records(small, index), scene_records(large, index)
        assert (a.vqa, a.captions, a.refs) == (b.vqa, b.captions, b.refs)
        assert np.array_equal(a.image.proposals, b.image.proposals)


def test_splits_are_disjoint_cover_all_scenes_and_follow_the_fractions():
    cfg, splits = dataset()
    ids = {name: set(part.images) for name, part in splits.items()}
    assert set(ids) == {"train", "val", "test"}
    for a, b in itertools.combinations(ids.values(), 2):
        assert not a & b
    assert set().union(*ids.values()) == {f"scene_{i:06d}" for i in range(cfg.num_scenes)}
    assert len(ids["val"]) == round(cfg.val_fraction * cfg.num_scenes)
    assert len(ids["test"]) == round(cfg.test_fraction * cfg.num_scenes)
    for part in splits.values():  # every record belongs to an image of its own split
        for rec in (*part.vqa, *part.captions, *part.refs):
            assert rec.image_id in part.images


def test_object_count_varies_within_the_configured_range():
    cfg, splits = dataset()
    counts = Counter(len(s.objects) for s in (sample_scene(cfg, i) for i in range(cfg.num_scenes)))
    assert set(counts) == set(range(cfg.min_objects, cfg.max_objects + 1))
    assert min(counts.values()) > 0.1 * cfg.num_scenes
    narrow = SceneConfig(num_scenes=10, min_objects=2, max_objects=4)
    assert {len(sample_scene(narrow, i).objects) for i in range(40)} == {2, 3, 4}


def test_boxes_lie_inside_the_image_and_keep_a_gap():
    cfg = SceneConfig(num_scenes=10)
    for i in range(200):
        scene = sample_scene(cfg, i)
        boxes = np.array([o.box for o in scene.objects])
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= scene.width).all() and (boxes[:, 3] <= scene.height).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        for a, b in itertools.combinations(boxes, 2):
            gap = max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3])  # < 0: they overlap
            assert gap >= 3.0, f"scene {i}: boxes {a} and {b} are {gap:.1f} px apart"


def test_sizes_are_visibly_different_and_attributes_repeat_within_scenes():
    cfg = SceneConfig(num_scenes=10)
    scenes = [sample_scene(cfg, i) for i in range(200)]
    small = max(o.extent for s in scenes for o in s.objects if o.size == "small")
    large = min(o.extent for s in scenes for o in s.objects if o.size == "large")
    assert large > 1.3 * small
    # palettes: in most scenes with 5+ objects some colour occurs at least twice
    crowded = [s for s in scenes if len(s.objects) >= 5]
    repeated = [max(Counter(o.colour for o in s.objects).values()) >= 2 for s in crowded]
    assert np.mean(repeated) > 0.9


def test_rendered_pixels_at_object_centres_have_the_object_colour():
    cfg = SceneConfig(num_scenes=10)
    palette = {name: np.array(rgb, float) for name, rgb in COLOURS.items()}
    for i in range(40):
        scene = sample_scene(cfg, i)
        image = scene_records(cfg, i).image.render()
        assert image.mode == "RGB" and image.size == (scene.width, scene.height)
        pixels = np.asarray(image, float)
        for obj in scene.objects:
            x, y = int(obj.cx), int(obj.cy)  # the frame centre lies inside every shape
            rgb = np.median(pixels[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3), axis=0)
            nearest = min(palette, key=lambda name: np.linalg.norm(palette[name] - rgb))
            assert nearest == obj.colour, f"scene {i}: {obj.colour} {obj.shape} rendered as {nearest} {rgb}"


def test_background_is_textured():
    cfg = SceneConfig(num_scenes=10)
    scene = sample_scene(cfg, 0)
    pixels = np.asarray(scene_records(cfg, 0).image.render(), float)
    free = np.ones(pixels.shape[:2], bool)
    for o in scene.objects:
        x1, y1, x2, y2 = (int(v) for v in o.box)
        free[max(y1 - 2, 0) : y2 + 3, max(x1 - 2, 0) : x2 + 3] = False
    assert pixels[free].std(axis=0).min() > 3.0  # not a flat colour


def _blended_edge_share(supersample: int) -> float:
    """Share of pixels on circle outlines whose colour is clearly between shape and background."""
    cfg = SceneConfig(num_scenes=10)
    blended = []
    for i in range(30):
        scene = sample_scene(cfg, i)
        pixels = np.asarray(render_scene(scene, supersample), float)
        ys, xs = np.mgrid[0 : scene.height, 0 : scene.width] + 0.5
        for o in (o for o in scene.objects if o.shape == "circle"):
            ring = np.abs(np.hypot(xs - o.cx, ys - o.cy) - o.extent / 2) < 0.3
            inside = np.linalg.norm(pixels[ring] - np.array(o.rgb), axis=1)
            outside = np.linalg.norm(pixels[ring] - np.array(scene.background), axis=1)
            blended += list((inside > 30) & (outside > 30))
    return float(np.mean(blended))


def test_edges_are_anti_aliased_by_supersampling():
    assert _blended_edge_share(3) > 0.4
    assert _blended_edge_share(1) < 0.25


def test_rendering_is_fast():
    cfg = SceneConfig(num_scenes=10)
    scenes = [scene_records(cfg, i).image for i in range(60)]
    start = time.process_time()  # CPU time: robust to other processes sharing the cores
    for img in scenes:
        img.render()
    per_image = (time.process_time() - start) / len(scenes)
    assert per_image < 0.02, f"{per_image * 1e3:.1f} ms per image"  # ~4 ms measured


def test_image_records_pickle_with_their_renderer():
    cfg, splits = dataset()
    img = next(iter(splits["val"].images.values()))
    clone = pickle.loads(pickle.dumps(img))
    assert np.array_equal(np.asarray(clone.render()), np.asarray(img.render()))
    assert np.array_equal(clone.proposals, img.proposals)


def test_scene_of_maps_image_ids_back_to_scenes():
    cfg, splits = dataset()
    iid = sorted(splits["test"].images)[0]
    assert scene_of(cfg, iid) == sample_scene(cfg, index_of(iid))
    with pytest.raises(ValueError, match="not a scene image id"):
        index_of("COCO_000123")
    with pytest.raises(ValueError, match="not in this data set"):
        scene_of(cfg, f"scene_{cfg.num_scenes:06d}")


@pytest.mark.parametrize(
    "override, message",
    [
        ("min_objects=1", "min_objects"),
        ("max_objects=12", "max_objects"),
        ("captions_per_image=6", "captions_per_image"),
        ("max_regions=5", "max_regions"),
        ("test_fraction=0.95", "val_fraction \\+ test_fraction"),
        ("num_scenes=4", "too small"),
        ("image_size=32", "image_size"),
        ("colours=3", "unknown key"),
    ],
)
def test_invalid_configs_fail_clearly(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(SceneConfig, {}, [override])


def test_describe_counts_records_per_split_family_and_answer_type():
    cfg, splits = dataset()
    stats = describe(splits)
    for name, part in splits.items():
        s = stats[name]
        assert s["images"] == len(part.images)
        assert s["questions"] == len(part.vqa) == sum(s["questions_by_family"].values())
        assert sum(s["questions_by_answer_type"].values()) == len(part.vqa)
        assert set(s["questions_by_family"]) == {"exist", "count", "attribute", "compare", "relation"}
        assert set(s["questions_by_answer_type"]) == {"yes/no", "number", "other"}
        assert s["captions"] == len(part.captions) == 5 * len(part.images)
        assert s["hard_negatives"] == sum(len(c.hard_negatives) for c in part.captions)
        assert s["refs"] == len(part.refs) == sum(s["refs_by_family"].values())
        assert s["regions_per_image"]["max"] <= cfg.max_regions


@pytest.mark.parametrize(
    "overrides",
    [
        {"image_size": 96, "min_objects": 4, "max_objects": 9, "seed": 5},
        {"image_size": 256, "min_objects": 2, "max_objects": 3, "seed": 6, "questions_per_image": 10},
    ],
)
def test_non_default_configs_produce_records_the_oracle_accepts(overrides):
    cfg = SceneConfig(num_scenes=30, **overrides)
    for i in range(cfg.num_scenes):
        rec = scene_records(cfg, i)
        objs = objects_of(rec.scene)
        assert cfg.min_objects <= len(objs) <= cfg.max_objects
        assert rec.image.render().size == (cfg.image_size, cfg.image_size)
        assert len(rec.vqa) == cfg.questions_per_image
        for q in rec.vqa:
            assert answer(objs, q.question) == next(iter(q.answers)), q
        for c in rec.captions:
            assert caption_true(objs, c.caption, require_unique=True) and c.hard_negatives
            assert not any(caption_true(objs, n) for n in c.hard_negatives), c
        for r in rec.refs:
            assert referent(objs, r.expression)[0].box == pytest.approx(r.target_box), r
        assert len(rec.captions) == 5 and len(rec.refs) == cfg.refs_per_image
