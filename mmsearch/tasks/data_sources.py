"""The data of the three scene tasks (vqa, itm, vg): the precomputed stores and the generated scenes.

``mmsearch.data.tasks`` reads a task's tables (vqa: ``vqa``; itm: ``captions`` + ``negatives``;
vg: ``refs``) from a data set the precompute job wrote, ``mmsearch.data.synthetic`` generates
scenes with questions, captions or referring expressions. Both take the task's name; a task of
its own kind of data gives its entry other functions.
"""
from __future__ import annotations

from typing import Any

from mmsearch.data.task_data import TaskData, TaskDataConfig


def open_store_data(cfg: TaskDataConfig, **options: Any) -> TaskData:
    """The precomputed data set at ``cfg.root`` (``options`` go to ``open_task_data``)."""
    from mmsearch.data.tasks import open_task_data  # pyarrow and the store code: only when used

    return open_task_data(cfg, **options)


def generated_scenes(cfg: TaskDataConfig, **sizes: Any) -> TaskData:
    """Generated scenes for ``cfg`` (task, weights/arch division, part caps); ``sizes`` as SyntheticTaskData."""
    from mmsearch.data.synthetic import SyntheticTaskData

    return SyntheticTaskData.from_config(cfg, **sizes)


__all__ = ["generated_scenes", "open_store_data"]
