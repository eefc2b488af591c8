"""VG (visual grounding): the box a referring expression names; accuracy at IoU >= 0.5 (``vg_acc``) selects."""
from __future__ import annotations

from typing import Any

from torch import Tensor

from mmsearch.data.task_data import TaskInfo
from mmsearch.heads import HeadEntry, VGHead, VGHeadConfig, VGObjective, evaluate_vg, predict_vg
from mmsearch.tasks.data_sources import generated_scenes, open_store_data
from mmsearch.tasks.entry import Labels, ResultFile, TaskEntry
from mmsearch.tasks.registry import register_task


def box_rows(predicted: dict[str, Tensor], ids: list[Any], info: TaskInfo) -> list[dict[str, Any]]:
    """One box per expression: ``[{"ref_id": ..., "box": [x1, y1, x2, y2], "score": p}]`` (pixels;
    score = the top region's softmax probability)."""
    boxes, scores = predicted["box"].tolist(), predicted["region_prob"].tolist()
    return [{"ref_id": ref_id, "box": [round(c, 2) for c in box], "score": round(score, 5)}
            for ref_id, box, score in zip(ids, boxes, scores)]


VG = register_task(TaskEntry(
    name="vg",
    head=HeadEntry(VGHeadConfig, VGHead, VGObjective, evaluate_vg,
                   lambda cfg, out, batch: predict_vg(out, batch, cfg.delta_stds)),
    primary_metric="vg_acc",
    labels=Labels(metric="grounding acc@0.5", unit="%", meaning="grounding accuracy at IoU >= 0.5 in %, vg_acc"),
    results=ResultFile("{split}_vg_boxes.json", box_rows, id_keys=("ref_id", "sample_id")),
    open_data=open_store_data,
    synthetic_data=generated_scenes,
    smoke_val_samples=64,
), aliases=("vgd", "grounding"))

__all__ = ["VG", "box_rows"]
