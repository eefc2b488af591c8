"""The objective protocol every task implements, and helpers to read targets from a batch.

Two equivalent ways to use an objective:

* ``loss(run, batch, epoch)``: the objective calls ``run(batch) -> head outputs`` (the network
  forward) itself, as often as it needs (ITM scores candidate negatives, then trains on
  re-paired inputs);
* ``pairs = prepare(run, batch, epoch)`` then ``loss_from_outputs(outputs, pairs)`` with the
  caller running the network on ``pairs`` once, with grad (what step functions of the form
  ``objective(outputs, batch)`` need, e.g. ``mmsearch.nas.steps``). ``prepare`` returns the
  batch unchanged for VQA and VG; ``run`` is only called there without grad, to mine negatives.

Every objective returns ``(loss, logs)``: a scalar tensor to backpropagate and plain floats
(``loss`` plus task figures; accuracies and shares in percent, like the evaluation metrics).
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch
from torch import Tensor

from mmsearch.batch import MultimodalBatch

RunFn = Callable[[MultimodalBatch], dict[str, Tensor]]


class Objective(Protocol):
    def loss(self, run: RunFn, batch: MultimodalBatch, epoch: int = 0) -> tuple[Tensor, dict[str, float]]:
        """Loss for one batch at (0-based) ``epoch``; ``run`` maps a batch to head outputs."""

    def prepare(self, run: RunFn, batch: MultimodalBatch, epoch: int = 0) -> MultimodalBatch:
        """The batch the network must run on (with grad) for this step."""

    def loss_from_outputs(self, outputs: dict[str, Tensor], batch: MultimodalBatch) -> tuple[Tensor, dict[str, float]]:
        """Loss from the head outputs on a batch returned by :meth:`prepare`."""


def require_target(batch: MultimodalBatch, key: str, task: str, shape: str) -> Tensor:
    """``batch.targets[key]`` or a clear error saying which task needs it and in what shape."""
    value = batch.targets.get(key)
    if value is None:
        known = ", ".join(sorted(batch.targets)) or "none"
        raise KeyError(f"{task} needs batch.targets[{key!r}] ({shape}); the batch has targets: {known}")
    if value.shape[0] != batch.batch_size:
        raise ValueError(f"batch.targets[{key!r}] has {value.shape[0]} rows but the batch has {batch.batch_size}")
    return value


def require_field(batch: MultimodalBatch, name: str, task: str, shape: str) -> Tensor:
    """A batch input field (``region_boxes``, ``image_size``, ...) the task cannot do without."""
    value = getattr(batch, name)
    if value is None:
        raise ValueError(f"{task} needs batch.{name} ({shape}), which is None")
    return value


def require_output(outputs: dict[str, Tensor], key: str, task: str) -> Tensor:
    value = outputs.get(key)
    if value is None:
        raise KeyError(f"{task} expects head output {key!r}, got outputs {sorted(outputs)}; is the network using the {task} head?")
    return value


def check_finite(name: str, value: Tensor) -> None:
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def to_floats(logs: dict[str, Tensor]) -> dict[str, float]:
    """Detached scalar tensors -> floats with a single device sync."""
    if not logs:
        return {}
    values = torch.stack([v.detach().float().reshape(()) for v in logs.values()]).tolist()
    return dict(zip(logs, values))


__all__ = ["Objective", "RunFn", "check_finite", "require_field", "require_output", "require_target", "to_floats"]
