"""The three kinds of samples the generated scenes pose (``mmsearch.data.synthetic``), one
:class:`SceneKind` each: which sample maker of ``SyntheticTaskData`` writes a sample, whether the
data has an answer vocabulary, the per-split target arrays and how a batch's targets are collated.

* vqa: questions; one-hot ``answer_scores`` [B, A], ``referent_boxes`` [B, K, 4] pixels with
  ``referent_mask`` [B, K] (True at padding), meta ``answer_type`` and ``question_id``;
* itm: captions with one hard negative each (``neg_text_ids`` / ``neg_text_mask`` /
  ``neg_text_states`` [B, 1, T(, Dt)]; the negatives share the batch's text width);
* vg: referring expressions; ``gt_box`` [B, 4] pixels, the target box jittered by up to a pixel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from mmsearch.batch import MultimodalBatch


@dataclass(frozen=True)
class SceneKind:
    maker: str  # the SyntheticTaskData method that makes one sample: (rng, image, scene) -> _Sample
    prepare: Callable[[Any, Any, int], None]  # (split, data, split code): the split's target arrays
    collate: Callable[[Any, np.ndarray, MultimodalBatch, int], None]  # (split, rows, batch, text width)
    answers: bool = False  # the data has an answer vocabulary (TaskInfo.num_answers / answers)
    negatives: bool = False  # hard-negative texts, which share the batch's text width


def _vqa_prepare(split: Any, data: Any, code: int) -> None:
    split.answer = np.array([data.answers.index(s.answer) for s in split.samples], dtype=np.int64)
    split.num_answers = len(data.answers)
    width = max((len(s.referents) for s in split.samples), default=0)
    split.referent_boxes = np.zeros((len(split.samples), width, 4), dtype=np.float32)
    split.referent_mask = np.ones((len(split.samples), width), dtype=bool)
    for row, sample in enumerate(split.samples):
        for k, index in enumerate(sample.referents):
            split.referent_boxes[row, k] = split.objects[sample.image][index].box
            split.referent_mask[row, k] = False


def _vqa_collate(split: Any, rows: np.ndarray, batch: MultimodalBatch, t: int) -> None:
    scores = torch.zeros(len(rows), split.num_answers)
    scores[torch.arange(len(rows)), torch.from_numpy(split.answer[rows])] = 1.0
    batch.targets["answer_scores"] = scores
    width = int((~split.referent_mask[rows]).sum(axis=1).max(initial=0))
    batch.targets["referent_boxes"] = torch.from_numpy(split.referent_boxes[rows, :width])
    batch.targets["referent_mask"] = torch.from_numpy(split.referent_mask[rows, :width])
    batch.meta["answer_type"] = [split.samples[r].answer_type for r in rows.tolist()]
    batch.meta["question_id"] = batch.meta["sample_id"]


def _itm_prepare(split: Any, data: Any, code: int) -> None:
    split.neg_ids, split.neg_length = split.encode([s.negative or [] for s in split.samples])


def _itm_collate(split: Any, rows: np.ndarray, batch: MultimodalBatch, t: int) -> None:
    neg_ids = torch.from_numpy(split.neg_ids[rows, :t]).unsqueeze(1)
    neg_mask = (torch.arange(t)[None, :] >= torch.from_numpy(split.neg_length[rows])[:, None]).unsqueeze(1)
    batch.targets.update(
        neg_text_ids=neg_ids,
        neg_text_mask=neg_mask,
        neg_text_states=split.states(split.neg_ids[rows, :t]).unsqueeze(1).masked_fill(neg_mask[..., None], 0.0),
    )


def _vg_prepare(split: Any, data: Any, code: int) -> None:
    jitter = np.random.default_rng([data._seed, code, 2]).uniform(-1.0, 1.0, size=(len(split.samples), 4))
    boxes = np.stack([split.objects[s.image][s.target].box for s in split.samples]).astype(np.float32)
    split.gt_box = boxes + jitter.astype(np.float32)


def _vg_collate(split: Any, rows: np.ndarray, batch: MultimodalBatch, t: int) -> None:
    batch.targets["gt_box"] = torch.from_numpy(split.gt_box[rows])


SCENE_KINDS: dict[str, SceneKind] = {
    "vqa": SceneKind("_question", _vqa_prepare, _vqa_collate, answers=True),
    "itm": SceneKind("_caption", _itm_prepare, _itm_collate, negatives=True),
    "vg": SceneKind("_expression", _vg_prepare, _vg_collate),
}

__all__ = ["SCENE_KINDS", "SceneKind"]
