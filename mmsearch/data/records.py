"""Data-set records shared by the embedded scene generator and the real-format loaders.

Every source (embedded scenes, VQA-v2, Flickr30K/COCO Karpathy, RefCOCO/+/g) yields the same
record types, so the precompute job and the task datasets never care where data came from.
Boxes are pixels ``(x1, y1, x2, y2)`` unless a field says otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np

Split = Literal["train", "val", "test"]
AnswerType = Literal["yes/no", "number", "other"]


@dataclass(frozen=True)
class ImageRecord:
    """One image and where its region features come from.

    Exactly one way of getting region features must be available:
      * ``proposals`` + ``render`` (or ``path``): crop the proposals from the image and encode
        them with a frozen image encoder (embedded scenes);
      * ``region_file``: a bottom-up-attention ``.npz`` (``x``, ``bbox``, ``image_h``, ``image_w``).
    """

    image_id: str
    height: int
    width: int
    proposals: np.ndarray | None = None  # [N, 4] float32 pixel boxes to crop as regions
    path: str | None = None  # image file on disk (real data sets)
    region_file: str | None = None  # precomputed bottom-up-attention features (.npz)
    render: Callable[[], "object"] | None = field(default=None, compare=False, repr=False)  # -> PIL.Image (scenes)


@dataclass(frozen=True)
class VQARecord:
    question_id: str
    image_id: str
    question: str
    answers: dict[str, float]  # answer string -> soft score in [0, 1] (VQA-v2: from 10 human answers)
    answer_type: AnswerType
    family: str  # question family / type (scenes: exist, count, attribute, compare, relation, ...)
    # Pixel boxes (x1, y1, x2, y2) of the objects the answer is read from (scenes: exact; real data
    # sets: none). A VQA head can be supervised to attend to them (``head.grounding_weight``).
    referent_boxes: tuple[tuple[float, float, float, float], ...] = ()


@dataclass(frozen=True)
class CaptionRecord:
    caption_id: str
    image_id: str
    caption: str
    hard_negatives: tuple[str, ...] = ()  # captions with one attribute or relation swapped (scenes only)


@dataclass(frozen=True)
class RefRecord:
    ref_id: str
    image_id: str
    expression: str
    target_box: tuple[float, float, float, float]  # pixels x1 y1 x2 y2
    family: str = ""  # scenes: which cue disambiguates (attribute, relation, ...)


@dataclass
class DatasetSplit:
    """All records of one split of one data set."""

    name: str  # data set name, e.g. "scenes", "vqa_v2", "flickr30k", "refcoco"
    split: Split
    images: dict[str, ImageRecord]
    vqa: list[VQARecord] = field(default_factory=list)
    captions: list[CaptionRecord] = field(default_factory=list)
    refs: list[RefRecord] = field(default_factory=list)
