"""ITM: does a caption match an image; retrieval recall sum (``itm_rsum``) selects."""
from __future__ import annotations

from mmsearch.heads import HeadEntry, ITMHead, ITMHeadConfig, ITMObjective, evaluate_itm, predict_itm
from mmsearch.tasks.data_sources import generated_scenes, open_store_data
from mmsearch.tasks.entry import Labels, ResultFile, TaskEntry
from mmsearch.tasks.registry import register_task

ITM = register_task(TaskEntry(
    name="itm",
    head=HeadEntry(ITMHeadConfig, ITMHead, ITMObjective, evaluate_itm, lambda cfg, out, batch: predict_itm(out, batch)),
    primary_metric="itm_rsum",
    labels=Labels(
        metric="retrieval rsum", unit="sum of recalls, %",
        meaning="ITM recall sum R@1+R@5+R@10 image->text plus text->image, in % each so 600 at best, itm_rsum",
    ),
    # Retrieval scores pairs the evaluation builds itself: the file holds the metrics
    # (R@1/5/10 both ways, rsum, set sizes), no per-sample rows.
    results=ResultFile("{split}_itm_retrieval.json"),
    open_data=open_store_data,
    synthetic_data=generated_scenes,
    smoke_val_samples=50,
))

__all__ = ["ITM"]
