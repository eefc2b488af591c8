"""The task registry ``TASKS`` and the calls that use a task by name or head config.

A recipe uses a task's head through four calls, all taking a head config or a task name::

    head = build_head(cfg, hidden_size)            # nn.Module
    objective = make_objective(cfg)                # objective.loss(run, batch, epoch) -> (loss, logs)
    metrics = evaluate(cfg, run, batches)          # dict[str, float]; the selection metric: primary_metric(task)
    prediction = predict(cfg, outputs, batch)      # tensors a prediction file needs

``HeadConfig`` is the type of a recipe config's ``head`` section: a mapping whose ``task`` key
names a registered task, validated into that task's head config class (so a task registered
later, e.g. by a test, is accepted too).
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Annotated, Any, Iterable

from pydantic import BeforeValidator, TypeAdapter
from torch import Tensor, nn

from mmsearch.batch import MultimodalBatch
from mmsearch.config import bools_where_numbers, replace, validate_config
from mmsearch.heads import Objective, RunFn
from mmsearch.registry import Registry
from mmsearch.tasks.entry import TaskEntry

TASKS: Registry[TaskEntry] = Registry("task")


def register_task(entry: TaskEntry, *, aliases: tuple[str, ...] = ()) -> TaskEntry:
    """Add a task (at import of the module that defines it); returns the entry."""
    TASKS.add(entry.name, entry, aliases=aliases)
    return entry


def task_entry(name: str) -> TaskEntry:
    """The entry of task ``name`` (or an alias); an unknown name fails listing the known tasks."""
    return TASKS.get(name)


def check_task(name: str, key: str = "data.task") -> str:
    """``name`` if it is a registered task's own name, else a ValueError naming ``key``."""
    if name not in TASKS.names():
        raise ValueError(f"{key} is {name!r}, not a known task; known tasks: {', '.join(TASKS.names())}")
    return name


def primary_metric(task: str) -> str:
    """The metric a task selects by (higher is better: ``val_metric`` is maximised everywhere)."""
    return TASKS.get(task).primary_metric


def _is_head_config(value: Any) -> bool:
    task = getattr(value, "task", None)
    return dataclasses.is_dataclass(value) and isinstance(task, str) and task in TASKS \
        and isinstance(value, TASKS.get(task).head.config)


def _validate_head(value: Any) -> Any:
    """A ``head:`` section -> the head config of the task its ``task`` key names."""
    if _is_head_config(value):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping with a 'task' key, got {type(value).__name__}")
    task = value.get("task")
    if not isinstance(task, str) or task not in TASKS.names():
        raise ValueError(f"'task' must name a known task ({', '.join(TASKS.names())}), got {task!r}")
    cls = TASKS.get(task).head.config
    booleans = bools_where_numbers(cls, value)
    if booleans:  # as mmsearch.config.validate_config: YAML true is no number
        raise ValueError("; ".join(f"{key}: a number is expected, got a boolean ({flag!r})" for key, flag in booleans))
    return TypeAdapter(cls).validate_python(value)


HeadConfig = Annotated[Any, BeforeValidator(_validate_head)]


def head_config(task_or_cfg: Any, **overrides: Any) -> Any:
    """A validated head config: the defaults of task ``name`` or a given config, with overrides."""
    if isinstance(task_or_cfg, str):
        entry = TASKS.get(task_or_cfg)
        return validate_config(entry.head.config, overrides, f"{entry.name} head")
    if not _is_head_config(task_or_cfg):
        raise TypeError(f"expected a task name or a head config, got {type(task_or_cfg).__name__}")
    return replace(task_or_cfg, **overrides) if overrides else task_or_cfg


def build_head(task_or_cfg: Any, hidden_size: int, *, layer_norm: str = "torch", **overrides: Any) -> nn.Module:
    """The head module for a network of width ``hidden_size``, e.g. ``build_head("vqa", 512, num_answers=3129)``;
    ``layer_norm`` is the network's setting (``"mmnas"``: MMnas's LayerNorm in the head too)."""
    if hidden_size <= 0:
        raise ValueError(f"hidden_size must be positive, got {hidden_size}")
    cfg = head_config(task_or_cfg, **overrides)
    make = TASKS.get(cfg.task).head.head
    if layer_norm == "torch":  # a registered head need not know the option (its default)
        return make(cfg, hidden_size)
    if "layer_norm" not in inspect.signature(make).parameters:
        raise ValueError(f"model.layer_norm={layer_norm!r}: the {cfg.task} head does not take a layer_norm setting")
    return make(cfg, hidden_size, layer_norm=layer_norm)


def make_objective(task_or_cfg: Any, **overrides: Any) -> Objective:
    cfg = head_config(task_or_cfg, **overrides)
    return TASKS.get(cfg.task).head.objective(cfg)


def evaluate(task_or_cfg: Any, run: RunFn, batches: Iterable[MultimodalBatch]) -> dict[str, float]:
    """Metrics over an evaluation set, run without grad. Put the network in eval mode first."""
    cfg = head_config(task_or_cfg)
    return TASKS.get(cfg.task).head.evaluate(cfg, run, batches)


def predict(task_or_cfg: Any, outputs: dict[str, Tensor], batch: MultimodalBatch) -> dict[str, Tensor]:
    cfg = head_config(task_or_cfg)
    return TASKS.get(cfg.task).head.predict(cfg, outputs, batch)


__all__ = ["TASKS", "HeadConfig", "build_head", "check_task", "evaluate", "head_config", "make_objective", "predict",
           "primary_metric", "register_task", "task_entry"]
