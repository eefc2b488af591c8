"""VQA: answer a question about an image; soft VQA accuracy (``vqa_acc``, %) selects."""
from __future__ import annotations

from typing import Any

from torch import Tensor

from mmsearch.config import replace
from mmsearch.data.task_data import TaskInfo
from mmsearch.heads import HeadEntry, VQAHead, VQAHeadConfig, VQAObjective, evaluate_vqa, predict_vqa
from mmsearch.tasks.data_sources import generated_scenes, open_store_data
from mmsearch.tasks.entry import Labels, ResultFile, TaskEntry
from mmsearch.tasks.registry import register_task


def fit_head(head: VQAHeadConfig, info: TaskInfo) -> VQAHeadConfig:
    """The answer vocabulary's size from the data; a size the config states must agree; a grounding
    term needs the data's referent boxes."""
    if info.num_answers <= 0:
        raise ValueError("the VQA data has no answer vocabulary (num_answers 0)")
    if head.num_answers is not None and head.num_answers != info.num_answers:
        raise ValueError(f"head.num_answers is {head.num_answers} but the data has {info.num_answers} answers")
    if head.grounding_weight > 0 and "referent_boxes" not in info.optional_targets:
        raise ValueError(
            f"head.grounding_weight is {head.grounding_weight} but the data has no referent boxes (a real VQA source "
            "has none; an embedded-scenes data set written before them needs rebuilding): set head.grounding_weight=0"
        )
    return replace(head, num_answers=info.num_answers)


def answer_rows(predicted: dict[str, Tensor], ids: list[Any], info: TaskInfo) -> list[dict[str, Any]]:
    """The official VQA results format: ``[{"question_id": ..., "answer": "..."}]``."""
    answers = info.answers
    return [{"question_id": qid, "answer": answers[index] if answers else str(index)}
            for qid, index in zip(ids, predicted["answer_index"].tolist())]


VQA = register_task(TaskEntry(
    name="vqa",
    head=HeadEntry(VQAHeadConfig, VQAHead, VQAObjective, evaluate_vqa, lambda cfg, out, batch: predict_vqa(out, batch)),
    primary_metric="vqa_acc",
    labels=Labels(metric="VQA accuracy", unit="%", meaning="VQA accuracy in %, vqa_acc"),
    results=ResultFile("{split}_vqa_results.json", answer_rows, id_keys=("question_id", "sample_id")),
    open_data=open_store_data,
    synthetic_data=generated_scenes,
    fit_head=fit_head,
    smoke_val_samples=64,
))

__all__ = ["VQA", "answer_rows", "fit_head"]
