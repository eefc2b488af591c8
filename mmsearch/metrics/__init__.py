"""Metrics and box utilities: VQA soft accuracy, grounding accuracy, retrieval recall@K, IoU
and Fast R-CNN box deltas. Plain functions and small accumulators over torch tensors."""
from mmsearch.metrics.boxes import (
    DEFAULT_DELTA_STDS,
    PIXEL_OFFSET,
    aligned_box_iou,
    box_area,
    box_iou,
    clip_boxes,
    decode_box_deltas,
    encode_box_deltas,
)
from mmsearch.metrics.grounding import GroundingAccuracy, grounding_hits
from mmsearch.metrics.vqa import VQAAccuracy, official_answer_score, vqa_sample_scores

__all__ = [
    "DEFAULT_DELTA_STDS",
    "PIXEL_OFFSET",
    "GroundingAccuracy",
    "VQAAccuracy",
    "aligned_box_iou",
    "box_area",
    "box_iou",
    "clip_boxes",
    "decode_box_deltas",
    "encode_box_deltas",
    "grounding_hits",
    "official_answer_score",
    "vqa_sample_scores",
]
