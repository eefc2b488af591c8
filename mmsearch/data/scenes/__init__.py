"""Embedded benchmark data ("scenes"): a procedurally generated multimodal data set.

Each scene is a 128x128 image (configurable) of 3-7 non-overlapping objects on a textured
background. An object has a colour (8: red, green, blue, yellow, purple, orange, gray, cyan), a
shape (5: circle, square, triangle, star, diamond), a size (small, large) and a pixel box. Each
scene draws a small palette of colours and shapes, so attributes repeat within an image and
objects often need an attribute combination or a spatial relation to be singled out. Everything
is a pure function of ``(seed, scene index)``; splits are by scene.

Tasks (records of :mod:`mmsearch.data.records`):

* **VQA** (``VQARecord``, VQA-v2 answer types yes/no, number, other), 6 questions per image in
  five families: ``exist``, ``count``, ``attribute`` (colour / shape / size queries),
  ``compare`` (more / fewer / as many, larger / smaller, same colour / shape / size) and
  ``relation`` (left of / right of / above / below / closest to; attribute queries, existence
  and counts; a third of all questions). Answers are balanced per template: on 1000 scenes (seed 0)
  the yes share is 0.49-0.53 in every family, the majority answer covers 0.51-0.53 of
  ``exist``/``compare`` and 0.16-0.21 of ``count``/``attribute``/``relation``, counts spread over
  0-7, colours and shapes near uniform. Relational questions are only asked where ignoring the
  relation leaves the answer open or wrong. A text-only prior, the train majority answer of
  each exact question text, scores 0.34 on test (yes/no 0.48, number 0.24, other 0.21).
* **ITM** (``CaptionRecord``): 5 true captions per image (overview, horizontal and vertical
  relation, counts, attribute binding), each with up to 3 hard negatives that change one word
  (colour, shape, size, relation or number) and are verified false for the scene; a text-only
  classifier ranks a positive above its own negative only about half of the time.
* **VG** (``RefRecord``): 3 referring expressions per image verified to denote exactly one
  object, with the target box: ``attribute`` (25%), ``relation`` (50%) and ``spatial`` (25%,
  "the leftmost circle"); the last two only where the noun phrase alone is ambiguous.
* **Regions**: ``ImageRecord.proposals`` holds up to 24 detector-like boxes per image (noisy
  boxes around every object, one with IoU >= 0.6 each, plus background and straddling
  distractors); ``ImageRecord.render()`` draws the image (PIL, RGB).

Use :func:`build_scene_dataset` for the splits, :func:`scene_of` for the ground-truth scene of an
image id, :func:`answer_vocabulary` for the answer list and :func:`describe` for counts.
"""
from mmsearch.data.scenes.captions import CAPTION_KINDS
from mmsearch.data.scenes.config import SceneConfig
from mmsearch.data.scenes.dataset import (
    SPLITS,
    SceneRecords,
    answer_vocabulary,
    build_scene_dataset,
    describe,
    scene_of,
    scene_records,
    split_indices,
)
from mmsearch.data.scenes.questions import FAMILIES as VQA_FAMILIES
from mmsearch.data.scenes.referring import REF_FAMILIES
from mmsearch.data.scenes.render import render_scene
from mmsearch.data.scenes.world import COLOUR_NAMES, SHAPES, SIZES, Scene, SceneObject, sample_scene

__all__ = [
    "CAPTION_KINDS",
    "COLOUR_NAMES",
    "REF_FAMILIES",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "Scene",
    "SceneConfig",
    "SceneObject",
    "SceneRecords",
    "VQA_FAMILIES",
    "answer_vocabulary",
    "build_scene_dataset",
    "describe",
    "render_scene",
    "sample_scene",
    "scene_of",
    "scene_records",
    "split_indices",
]
