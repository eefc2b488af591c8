"""Loaders for the real data sets, in their released formats; each returns ``DatasetSplit`` records.

  * :func:`read_bua_npz` -- bottom-up-attention region features (one ``.npz`` per image);
  * :func:`load_vqa_v2` -- VQA-v2 questions + annotations (soft scores, answer normalisation);
  * :func:`load_karpathy` -- Flickr30K / COCO captions in Karpathy's split JSON;
  * :func:`load_refcoco` -- RefCOCO / RefCOCO+ / RefCOCOg converted per-sentence JSON;
  * :class:`RealDataSource` + :func:`load_real_split` -- a config section naming one of them.

Large JSON files are streamed element by element (:func:`iter_json_array`), read once.
"""
from __future__ import annotations

from mmsearch.data.loaders.bua import RegionFeatures, RegionFileError, read_bua_image_size, read_bua_npz
from mmsearch.data.loaders.fields import RecordError
from mmsearch.data.loaders.json_stream import JSONFormatError, iter_json_array
from mmsearch.data.loaders.karpathy import load_karpathy
from mmsearch.data.loaders.refcoco import load_refcoco
from mmsearch.data.loaders.source import RealDataSource, load_real_split
from mmsearch.data.loaders.vqa_answers import (
    build_answer_vocab,
    load_answer_vocab,
    normalize_answer,
    save_answer_vocab,
    soft_scores,
)
from mmsearch.data.loaders.vqa_v2 import load_vqa_v2

__all__ = [
    "JSONFormatError",
    "RealDataSource",
    "RecordError",
    "RegionFeatures",
    "RegionFileError",
    "build_answer_vocab",
    "iter_json_array",
    "load_answer_vocab",
    "load_karpathy",
    "load_real_split",
    "load_refcoco",
    "load_vqa_v2",
    "normalize_answer",
    "read_bua_image_size",
    "read_bua_npz",
    "save_answer_vocab",
    "soft_scores",
]
