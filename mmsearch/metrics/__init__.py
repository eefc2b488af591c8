"""Metrics and box utilities: VQA soft accuracy, grounding accuracy, retrieval recall@K, IoU
and Fast R-CNN box deltas. Plain functions and small accumulators over torch tensors; accumulated
metrics are percentages (0-100)."""
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
from mmsearch.metrics.retrieval import chance_recall, retrieval_recall, retrieval_recall_chunked
from mmsearch.metrics.vqa import VQAAccuracy, official_answer_score, vqa_sample_scores

__all__ = [
    "DEFAULT_DELTA_STDS",
    "PIXEL_OFFSET",
    "GroundingAccuracy",
    "VQAAccuracy",
    "aligned_box_iou",
    "box_area",
    "box_iou",
    "chance_recall",
    "clip_boxes",
    "decode_box_deltas",
    "encode_box_deltas",
    "grounding_hits",
    "official_answer_score",
    "retrieval_recall",
    "retrieval_recall_chunked",
    "vqa_sample_scores",
]
