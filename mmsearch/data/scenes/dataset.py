"""Assemble scenes into train / val / test :class:`DatasetSplit`s (split by scene)."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Iterable, Mapping

import numpy as np

from mmsearch.data.records import CaptionRecord, DatasetSplit, ImageRecord, RefRecord, VQARecord
from mmsearch.data.scenes import captions, questions, referring
from mmsearch.data.scenes.config import SceneConfig, split_sizes
from mmsearch.data.scenes.proposals import propose_regions
from mmsearch.data.scenes.render import render_scene
from mmsearch.data.scenes.world import Scene, Stream, index_of, sample_scene, scene_rng
from mmsearch.progress import Progress

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_STREAM = 0x5EED  # entropy word of the split permutation, distinct from per-scene streams


def split_indices(cfg: SceneConfig) -> dict[str, list[int]]:
    """Scene indices per split: a seeded permutation of ``range(num_scenes)`` cut by fractions."""
    perm = np.random.default_rng([cfg.seed, _SPLIT_STREAM]).permutation(cfg.num_scenes)
    n_val, n_test = split_sizes(cfg)
    return {
        "train": sorted(int(i) for i in perm[n_val + n_test :]),
        "val": sorted(int(i) for i in perm[n_test : n_test + n_val]),
        "test": sorted(int(i) for i in perm[:n_test]),
    }


def scene_of(cfg: SceneConfig, image_id: str) -> Scene:
    """The scene behind ``image_id`` (regenerated: scenes are pure functions of seed and index)."""
    index = index_of(image_id)
    if index >= cfg.num_scenes:
        raise ValueError(f"{image_id!r} is not in this data set (num_scenes={cfg.num_scenes})")
    return sample_scene(cfg, index)


@dataclass(frozen=True)
class SceneRecords:
    """Everything generated for one scene."""

    scene: Scene
    image: ImageRecord
    vqa: list[VQARecord]
    captions: list[CaptionRecord]
    refs: list[RefRecord]


def scene_records(cfg: SceneConfig, index: int) -> SceneRecords:
    scene = sample_scene(cfg, index)
    rng = partial(scene_rng, cfg.seed, index)
    proposals = propose_regions(
        scene,
        rng(Stream.PROPOSALS),
        max_regions=cfg.max_regions,
        max_per_object=cfg.max_proposals_per_object,
        max_distractors=cfg.max_distractor_regions,
    )
    image = ImageRecord(
        image_id=scene.image_id,
        height=scene.height,
        width=scene.width,
        proposals=proposals,
        render=partial(render_scene, scene, cfg.supersample),
    )
    qs = questions.generate_questions(scene, cfg.questions_per_image, rng(Stream.QUESTIONS))
    caps = captions.generate_captions(
        scene,
        cfg.captions_per_image,
        cfg.hard_negatives_per_caption,
        rng(Stream.CAPTIONS),
        count_range=(cfg.min_objects, cfg.max_objects),
    )
    refs = referring.generate_expressions(scene, cfg.refs_per_image, rng(Stream.REFS))
    return SceneRecords(
        scene=scene,
        image=image,
        vqa=questions.to_records(scene, qs),
        captions=captions.to_records(scene.image_id, caps),
        refs=referring.to_records(scene, refs),
    )


def build_scene_dataset(cfg: SceneConfig | None = None, *, log: logging.Logger | None = None) -> dict[str, DatasetSplit]:
    """The whole data set as ``{"train": ..., "val": ..., "test": ...}``; deterministic in ``cfg``.

    With ``log``, a progress line (rate, ETA) every few seconds: a thousand scenes take tens of
    seconds on a small machine."""
    cfg = cfg or SceneConfig()
    progress = Progress("scene records", cfg.num_scenes, "scenes", log=log) if log is not None else None
    out = {}
    for split, indices in split_indices(cfg).items():
        part = DatasetSplit(name=cfg.name, split=split, images={})
        for index in indices:
            rec = scene_records(cfg, index)
            part.images[rec.image.image_id] = rec.image
            part.vqa.extend(rec.vqa)
            part.captions.extend(rec.captions)
            part.refs.extend(rec.refs)
            if progress is not None:
                progress.advance(1)
        out[split] = part
    return out


def answer_vocabulary(records: DatasetSplit | Iterable[VQARecord], min_count: int = 1) -> list[str]:
    """Answers seen at least ``min_count`` times, most frequent first (ties alphabetical).

    Build it over the train split only, as VQA models do; answers outside it are unanswerable.
    """
    items = records.vqa if isinstance(records, DatasetSplit) else records
    counts: Counter[str] = Counter()
    for rec in items:
        counts.update(rec.answers)
    return [a for a, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]


def describe(splits: Mapping[str, DatasetSplit]) -> dict:
    """Counts per split: images, regions, questions by family / answer type / majority answer
    share, captions and hard negatives, referring expressions by family."""
    out = {}
    for name, part in splits.items():
        regions = [len(img.proposals) for img in part.images.values() if img.proposals is not None]
        by_family: dict[str, Counter[str]] = {}
        for q in part.vqa:
            by_family.setdefault(q.family, Counter()).update(q.answers)
        out[name] = {
            "images": len(part.images),
            "regions_per_image": {
                "mean": float(np.mean(regions)) if regions else 0.0,
                "min": int(min(regions, default=0)),
                "max": int(max(regions, default=0)),
            },
            "questions": len(part.vqa),
            "questions_by_family": dict(sorted(Counter(q.family for q in part.vqa).items())),
            "questions_by_answer_type": dict(sorted(Counter(q.answer_type for q in part.vqa).items())),
            "majority_answer_share_by_family": {
                fam: round(c.most_common(1)[0][1] / sum(c.values()), 3) for fam, c in sorted(by_family.items())
            },
            "answers": len({a for q in part.vqa for a in q.answers}),
            "captions": len(part.captions),
            "hard_negatives": sum(len(c.hard_negatives) for c in part.captions),
            "refs": len(part.refs),
            "refs_by_family": dict(sorted(Counter(r.family for r in part.refs).items())),
        }
    return out
