"""Helpers shared by the MMnas recipes (search and derived training).

* :func:`data_sizes`: fill the model and head sizes the data decides (vocabulary, feature widths,
  answers; the task entry's ``fit_head``) from a ``TaskInfo``; a size the config states must agree with the data.
* :func:`checked`: a config class built with pydantic's errors flattened to one line.
* :func:`config_differences`: what changed between a checkpoint's config and the current one, so
  a resumed run refuses a different experiment.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mmsearch.tasks import HeadConfig, check_task, head_config, task_entry
from mmsearch.data.task_data import TaskDataConfig, TaskInfo

if TYPE_CHECKING:
    from mmsearch.recipes.model_config import ModelConfig

DEFAULT_WORD_DIM = 300  # learned token embedding width without pretrained rows (GloVe: 300)


def checked(cls: type, kwargs: dict, prefix: str = "") -> Any:
    """``cls(**kwargs)`` with pydantic's errors flattened to one readable line (after ``prefix``)."""
    try:
        return cls(**kwargs)
    except ValidationError as err:
        parts = [(".".join(map(str, e["loc"])) + ": " if e["loc"] else "") + e["msg"].removeprefix("Value error, ") for e in err.errors()]
        raise ValueError(prefix + "; ".join(parts)) from None


def data_sizes(model: ModelConfig, head: HeadConfig | None, data: TaskDataConfig, info: TaskInfo) -> tuple[dict[str, Any], HeadConfig]:
    """The model-section changes and the head config that match the data.

    ``model`` is a recipe's model section (its ``text_input``, ``region_dim``, ``vocab_size``,
    ``word_dim``, ``text_state_dim``: ``None`` = take it from the data).
    """
    if info.task != data.task:
        raise ValueError(f"the data is for task {info.task!r} but data.task is {data.task!r}")
    found: dict[str, Any] = {"text_input": data.text_input, "region_dim": info.region_dim}
    if data.text_input == "tokens":
        if info.vocab_size <= 0:
            raise ValueError("data.text_input is 'tokens' but the data has no token vocabulary (vocab_size 0); use text_input=states")
        found["vocab_size"] = info.vocab_size
        if info.embedding_init is not None:
            found["word_dim"] = int(info.embedding_init.shape[1])
    elif info.text_state_dim <= 0:
        raise ValueError("data.text_input is 'states' but the data has no per-token text states (text_state_dim 0)")
    else:
        found["text_state_dim"] = info.text_state_dim
    for key, value in found.items():
        stated = getattr(model, key)
        if stated is not None and stated != value:
            raise ValueError(f"model.{key} is {stated!r} but the data has {value!r}")
    changes = dict(found)
    if model.word_dim is None and "word_dim" not in changes and data.text_input == "tokens":
        changes["word_dim"] = DEFAULT_WORD_DIM
    head = head if head is not None else head_config(data.task)
    return changes, task_entry(head.task).fit_head(head, info)


def config_differences(saved: dict[str, Any], current: dict[str, Any], resumable: tuple[str, ...]) -> list[str]:
    """``"key: saved -> current"`` for every differing leaf, except keys in ``resumable``
    (a key, or a prefix ending in ``.`` for a whole section) and keys the saved config does not
    have: a key added to the config later defaults to the behaviour before it, so a checkpoint
    written before it resumes."""
    flat_saved, flat_current = _flatten(saved), _flatten(current)
    changed = []
    for key in sorted(flat_saved):
        if any(key == p or (p.endswith(".") and key.startswith(p)) for p in resumable):
            continue
        if flat_saved.get(key) != flat_current.get(key):
            changed.append(f"{key}: {flat_saved.get(key)!r} -> {flat_current.get(key)!r}")
    return changed


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def check_task_agreement(head: HeadConfig | None, data: TaskDataConfig, text_input: str | None) -> None:
    """A recipe config's head and model must describe the task and text input its data does;
    the task must be registered (``mmsearch.tasks.TASKS``)."""
    check_task(data.task, "data.task")
    if head is not None and head.task != data.task:
        raise ValueError(f"head.task ({head.task!r}) does not match data.task ({data.task!r})")
    if text_input is not None and text_input != data.text_input:
        raise ValueError(f"model.text_input ({text_input!r}) does not match data.text_input ({data.text_input!r})")
