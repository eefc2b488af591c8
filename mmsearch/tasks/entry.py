"""What a task is: one :class:`TaskEntry` per task, registered in ``mmsearch.tasks.TASKS``.

An entry gathers everything that differs between tasks, so the recipes, the jobs and the report
look a task up instead of naming it:

* the head (:class:`mmsearch.heads.HeadEntry`: config class, module, objective, evaluation,
  prediction) and :attr:`TaskEntry.fit_head`, which fills the head sizes the data decides;
* the data: :attr:`TaskEntry.open_data` (a precomputed data set, ``data.root``) and
  :attr:`TaskEntry.synthetic_data` (generated data, ``data.root: synthetic``), each a
  ``TaskData`` with its tables and collation;
* the selection rule: :attr:`TaskEntry.primary_metric`, reported as ``val_metric`` and always
  maximised (the search's best epoch, Tune's ``mode: max``, the shortlist's winner): a task whose
  natural figure is lower-is-better reports it negated or as a complement (100 - error);
* the result files of a trained network (:class:`ResultFile`);
* the labels the report and the job output print (:class:`Labels`);
* the validation samples of a job's smoke test.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import Tensor

from mmsearch.data.task_data import TaskData, TaskDataConfig, TaskInfo
from mmsearch.heads import HeadEntry

# (predictions of one batch from the head's ``predict``, the rows' ids, the data's TaskInfo) -> file rows
RowsFn = Callable[[dict[str, Tensor], list[Any], TaskInfo], list[dict[str, Any]]]


@dataclass(frozen=True)
class ResultFile:
    """The results file a trained network writes per split, under ``<output_dir>/predictions/``."""

    pattern: str  # file name with ``{split}``, e.g. "{split}_vqa_results.json"
    rows: RowsFn | None = None  # one row per sample; None: the file holds the split's metrics
    id_keys: tuple[str, ...] = ()  # batch.meta keys naming a row, first found wins (else: position)

    def name(self, split: str) -> str:
        return self.pattern.format(split=split)


@dataclass(frozen=True)
class Labels:
    """How the report and the job output name the primary metric."""

    metric: str  # axis label, e.g. "VQA accuracy"
    unit: str  # e.g. "%"
    meaning: str  # the job's line "val_metric is the <meaning>"


def _head_unchanged(head: Any, info: TaskInfo) -> Any:
    return head


@dataclass(frozen=True)
class TaskEntry:
    """Everything about one task (see the module docstring)."""

    name: str
    head: HeadEntry
    primary_metric: str  # a key of the head's evaluation metrics; the search's val_metric, higher is better
    labels: Labels
    results: ResultFile
    open_data: Callable[..., TaskData]  # (cfg: TaskDataConfig, **options) -> the precomputed data set
    synthetic_data: Callable[..., TaskData]  # (cfg: TaskDataConfig, **sizes) -> generated data
    fit_head: Callable[[Any, TaskInfo], Any] = _head_unchanged  # (head config, data info) -> head config
    smoke_val_samples: int = 64  # validation samples (and eval batch) of a job's smoke test

    def data(self, cfg: TaskDataConfig, synthetic: bool, **kwargs: Any) -> TaskData:
        """The task's data for ``cfg``: generated (``synthetic``) or the precomputed data set."""
        return self.synthetic_data(cfg, **kwargs) if synthetic else self.open_data(cfg, **kwargs)


__all__ = ["Labels", "ResultFile", "RowsFn", "TaskEntry"]
