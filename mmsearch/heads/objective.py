"""The objective protocol every task implements, and helpers to read targets from a batch.

An objective gets a ``run`` callable rather than head outputs, because some objectives (ITM)
must run the network several times per step on re-paired inputs. ``run(batch)`` is the network
forward (``text``/``regions`` through the chains, then the head) and returns the head's output
dict. Every objective returns ``(loss, logs)``: a scalar tensor to backpropagate and plain
floats to report.
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
