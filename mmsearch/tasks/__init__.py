"""Tasks (VQA, ITM, VG, ...): one module per task registers a :class:`TaskEntry` in ``TASKS``.

A task's entry holds its head, its data (tables and collation), its metric and selection rule,
its result files and report labels (:mod:`mmsearch.tasks.entry`). Recipes, jobs and the report
look a task up by name; none names a task. Adding a task is one module that calls
:func:`register_task` (see ``mmsearch/README.md``) plus its YAML configs.
"""
from __future__ import annotations

from mmsearch.tasks.entry import Labels, ResultFile, TaskEntry
from mmsearch.tasks.registry import (TASKS, HeadConfig, build_head, check_task, evaluate, head_config, make_objective,
                                     predict, primary_metric, register_task, task_entry)
from mmsearch.tasks import vqa  # noqa: F401,I001  (registration, in this order: vqa, itm, vg)
from mmsearch.tasks import itm  # noqa: F401,I001
from mmsearch.tasks import vg  # noqa: F401,I001

__all__ = ["TASKS", "HeadConfig", "Labels", "ResultFile", "TaskEntry", "build_head", "check_task", "evaluate",
           "head_config", "make_objective", "predict", "primary_metric", "register_task", "task_entry"]
