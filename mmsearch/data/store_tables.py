"""What a task reads from a precomputed data set: its sample table, meta columns, targets and their collation.

A :class:`StoreTables` describes one task's side of the data set format; ``StoreTaskData``
(``mmsearch.data.tasks``) is generic over it. The embedded scenes and the real-format loaders
write three sample tables, read by the three scene tasks (:data:`SCENE_TABLES`):

  * vqa -> ``vqa`` (targets ``answer_scores`` [B, A] and, where the data set has them,
    ``referent_boxes`` [B, K, 4] pixels with ``referent_mask`` [B, K] True at padding; meta
    ``question_id``, ``image_id``, ``answer_type``, ``family``);
  * itm -> ``captions`` + ``negatives`` (every row a positive pair; hard negatives as
    ``neg_text_mask`` [B, K, T] with ``neg_text_ids`` / ``neg_text_states``; meta
    ``caption_id``, ``image_id``);
  * vg -> ``refs`` (target ``gt_box`` [B, 4] pixels; meta ``ref_id``, ``image_id``, ``family``).

A task with a table of its own gives its entry (``mmsearch.tasks``) a ``StoreTables`` and opens
``StoreTaskData(cfg, root, card, tables=...)``; nothing here changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from mmsearch.data.collate import Ragged, answer_scores, negative_texts, tensor
from mmsearch.data.dataset_root import DatasetError
from mmsearch.data.store import Store
from mmsearch.data.table_rows import RowGroupCache, RowPlan, StreamedRows


@dataclass
class SplitArrays:
    """One split in memory: region bank, the task's samples, targets and meta. With
    ``data.regions: stream`` the bank is ``regions`` (read per batch) and ``features`` / ``boxes``
    are None."""

    features: Ragged | None
    boxes: Ragged | None
    sizes: np.ndarray  # [images, 2] (h, w)
    image_ids: np.ndarray  # [images] object
    sample_image: np.ndarray  # [samples] int64 image row of each sample
    token_ids: Ragged | None
    states: Ragged | None
    meta: dict[str, np.ndarray]  # name -> [samples] object
    targets: dict[str, Any] = field(default_factory=dict)
    regions: Any = None  # mmsearch.data.region_rows.StreamedRegions when streamed
    text_rows: StreamedRows | None = None  # the sample table's per-token states, when streamed
    stream_cache: RowGroupCache | None = None  # data.regions: stream -- the cache the streamed tables share; None: in memory

    @property
    def num_samples(self) -> int:
        return len(self.sample_image)


# (store, the sample table's columns, the split so far, text_input) -> fills split.targets
LoadTargets = Callable[[Store, pa.Table, SplitArrays, str], None]
# The streamed columns of one batch: stream name -> (its plan, its columns, batch-local).
BatchColumns = dict[str, tuple[RowPlan, dict[str, Ragged]]]
# (split, sample rows, answer count, the batch's streamed columns) -> batch.targets
CollateTargets = Callable[[SplitArrays, np.ndarray, int, BatchColumns], dict[str, Any]]
# (split, sample rows) -> the rows each of the task's own streams needs for them (name -> table rows)
TargetRows = Callable[[SplitArrays, np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class StoreTables:
    """One task's tables in a precomputed data set (see the module docstring)."""

    table: str  # the sample table, one row per sample (with token_ids / states, image_id)
    meta: tuple[str, ...]  # its columns carried as batch.meta
    load_targets: LoadTargets
    collate_targets: CollateTargets
    answers: bool = False  # reads the data set's answer vocabulary (which must not be empty)
    state_tables: tuple[str, ...] = ()  # further tables whose per-token states text_input=states reads, if present
    optional_targets: tuple[str, ...] = ()  # sample-table columns read as targets when present (TaskInfo.optional_targets)
    target_rows: TargetRows | None = None  # the rows of the streams its targets read (streamed data sets)


def _vqa_targets(store: Store, samples: pa.Table, data: SplitArrays, text_input: str) -> None:
    data.targets["answer_ids"] = Ragged.from_arrow(samples.column("answer_ids"))
    data.targets["answer_scores"] = Ragged.from_arrow(samples.column("answer_scores"))
    if "referent_boxes" in samples.column_names:  # data sets written before it have none
        data.targets["referent_boxes"] = Ragged.from_arrow(samples.column("referent_boxes"))


def _vqa_collate(data: SplitArrays, rows: np.ndarray, num_answers: int, streamed: BatchColumns) -> dict[str, Any]:
    out = {"answer_scores": answer_scores(rows, data.targets["answer_ids"], data.targets["answer_scores"], num_answers)}
    if "referent_boxes" in data.targets:
        boxes, padding = data.targets["referent_boxes"].gather(rows)
        out.update(referent_boxes=tensor(boxes, float32=True), referent_mask=tensor(padding))
    return out


def _vg_targets(store: Store, samples: pa.Table, data: SplitArrays, text_input: str) -> None:
    boxes = samples.column("target_box").combine_chunks().flatten()
    data.targets["gt_box"] = boxes.to_numpy(zero_copy_only=False).reshape(-1, 4).astype(np.float32)


def _vg_collate(data: SplitArrays, rows: np.ndarray, num_answers: int, streamed: BatchColumns) -> dict[str, Any]:
    return {"gt_box": tensor(data.targets["gt_box"][rows])}


def _itm_targets(store: Store, samples: pa.Table, data: SplitArrays, text_input: str) -> None:
    """The dataset's hard negative captions of each caption, when the data set has them (their
    ``states`` read per batch when the split streams: the ``negatives`` stream)."""
    if "negatives" not in store.tables:
        return
    column = "states" if text_input == "states" else "token_ids"
    streamed = column == "states" and data.stream_cache is not None
    negatives = store.table("negatives").read_arrow(["caption_id"] if streamed else ["caption_id", column])
    caption_row = {c: r for r, c in enumerate(data.meta["caption_id"])}
    owners = negatives.column("caption_id").to_pylist()
    stray = [c for c in owners if c not in caption_row]
    if stray:
        raise DatasetError(f"{store.uri}: negatives of unknown captions {stray[:5]}")
    data.targets["negatives"] = Ragged.from_groups(np.asarray([caption_row[c] for c in owners], np.int64), data.num_samples)
    if streamed:
        data.targets["neg_rows"] = StreamedRows(store.table("negatives"), ("states",), data.stream_cache, per_sample=True)
    else:
        data.targets["neg_states" if column == "states" else "neg_ids"] = Ragged.from_arrow(negatives.column(column))


def _itm_rows(data: SplitArrays, rows: np.ndarray) -> dict[str, np.ndarray]:
    if "neg_rows" not in data.targets:
        return {}
    index, absent = data.targets["negatives"].gather(rows)
    return {"negatives": index[~absent]}


def _itm_collate(data: SplitArrays, rows: np.ndarray, num_answers: int, streamed: BatchColumns) -> dict[str, Any]:
    if "negatives" not in data.targets:
        return {}
    if "negatives" not in streamed:
        return dict(negative_texts(rows, data.targets["negatives"], data.targets.get("neg_ids"), data.targets.get("neg_states")))
    # The batch's negatives, numbered within the batch: row i's are local[offsets[i]:offsets[i + 1]].
    plan, columns = streamed["negatives"]
    offsets = np.concatenate([[0], np.cumsum(data.targets["negatives"].lengths(rows))]).astype(np.int64)
    local = Ragged(plan.local.astype(np.int64), offsets)
    return dict(negative_texts(np.arange(len(rows)), local, None, columns["states"]))


VQA_TABLES = StoreTables("vqa", ("question_id", "image_id", "answer_type", "family"), _vqa_targets, _vqa_collate, answers=True,
                         optional_targets=("referent_boxes",))
ITM_TABLES = StoreTables("captions", ("caption_id", "image_id"), _itm_targets, _itm_collate, state_tables=("negatives",),
                         target_rows=_itm_rows)
VG_TABLES = StoreTables("refs", ("ref_id", "image_id", "family"), _vg_targets, _vg_collate)
# The scene tasks' tables by task name: what ``open_task_data(cfg)`` reads for ``cfg.task``.
SCENE_TABLES: dict[str, StoreTables] = {"vqa": VQA_TABLES, "itm": ITM_TABLES, "vg": VG_TABLES}

__all__ = ["ITM_TABLES", "SCENE_TABLES", "SplitArrays", "StoreTables", "VG_TABLES", "VQA_TABLES"]
