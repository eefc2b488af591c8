"""One training budget for every baseline: train on ``train``, select on ``val``, report ``test``.

:func:`train_and_select` trains a baseline with the task's real objective
(:func:`mmsearch.heads.make_objective`; VQA and ITM losses averaged per sample so that the
gradient clip means the same for every task and batch size), Adam with a linear warm-up over
the first epoch and a step decay for the last epochs, evaluates the ``val`` part after every
epoch, keeps the weights of the best epoch (the task's primary metric: ``vqa_acc``,
``itm_rsum``, ``vg_acc``; the earliest on ties) and evaluates them once on ``test``.

``data`` is any ``mmsearch.data.task_data.TaskData`` (``info``, ``batches(part, ...)``).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from pydantic import Field
from torch import nn

from mmsearch.baselines import DataSizes, Widths, build_baseline
from mmsearch.baselines.evaluation import evaluate_task
from mmsearch.batch import MultimodalBatch
from mmsearch.config import config_dataclass
from mmsearch.tasks import make_objective, primary_metric


@config_dataclass
class TrainBudget:
    """The same for every baseline and task."""

    epochs: int = Field(default=8, gt=0)
    batch_size: int = Field(default=64, gt=0)
    lr: float = Field(default=1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.98)  # MMnas's Adam
    eps: float = Field(default=1e-9, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    grad_clip: float = Field(default=1.0, gt=0)  # global grad-norm clip (MMnas: 1.0)
    decay_epochs: int = Field(default=2, ge=0)  # the last this many epochs run at lr * decay_rate
    decay_rate: float = Field(default=0.2, gt=0, le=1)
    eval_batch_size: int = Field(default=256, gt=0)
    # ITM retrieval sets: the first N images of the part x all their captions (every pair scored)
    itm_val_images: int | None = Field(default=50, gt=0)  # every epoch, for selection
    itm_test_images: int | None = Field(default=100, gt=0)  # once
    # ITM negatives per positive: one caption and one image re-paired from the batch and one of
    # the caption's hard negatives, at random (mined from itm_hard_from_epoch on, scoring
    # itm_candidates in-batch candidates per negative: several forwards per step)
    itm_hard_from_epoch: int | None = Field(default=None, ge=0)  # None: never mine
    itm_candidates: int = Field(default=4, ge=1)
    seed: int = 0


@dataclass
class BaselineResult:
    name: str
    task: str
    parameters: int
    best_epoch: int
    val: dict[str, float]  # at the best epoch
    test: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: lr, train_loss, val_metric, seconds
    seconds: dict[str, float] = field(default_factory=dict)  # wall: train, eval, total; cpu: this process's CPU time

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def learning_rate(budget: TrainBudget, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up over epoch 0 (from 1/steps to 1), then constant, x ``decay_rate`` in the last ``decay_epochs``."""
    if epoch == 0:
        return budget.lr * (step + 1) / max(1, steps_per_epoch)
    if epoch >= budget.epochs - budget.decay_epochs:
        return budget.lr * budget.decay_rate
    return budget.lr


def _objective(task: str, budget: TrainBudget):
    if task == "vqa":
        return make_objective("vqa", reduction="mean")
    if task == "itm":
        hard_from = budget.epochs if budget.itm_hard_from_epoch is None else budget.itm_hard_from_epoch
        return make_objective("itm", reduction="mean", num_candidates=budget.itm_candidates, hard_negatives_from_epoch=hard_from)
    return make_objective("vg")


def _training_loss(objective: Any, model: nn.Module, batch: MultimodalBatch, epoch: int) -> torch.Tensor:
    """The model's loss; an ensemble that trains its members independently (``member_losses``, the
    late-fusion baseline) sums its members' own losses instead of the loss of its combined output."""
    if getattr(model, "member_losses", False):
        return torch.stack([objective.loss(member, batch, epoch)[0] for member in model.members]).sum()
    return objective.loss(model, batch, epoch)[0]


def eval_batches(data: Any, part: str, budget: TrainBudget, device: torch.device | str = "cpu") -> list[MultimodalBatch]:
    """A part's batches in their stored order, collated once, moved to ``device`` and reused every epoch."""
    return [batch.to(device) for batch in data.batches(part, batch_size=budget.eval_batch_size, shuffle=False)]


def train_and_select(
    model: nn.Module,
    data: Any,
    budget: TrainBudget,
    *,
    name: str = "",
    log: Callable[[str], None] | None = None,
    device: torch.device | str = "cpu",
) -> BaselineResult:
    """Train ``model`` on ``data``'s ``train`` part, pick the best epoch on ``val``, evaluate it on
    ``test``; the model and every batch on ``device`` (fp32 everywhere: the budget's figures must
    not depend on where they ran beyond rounding)."""
    task = data.info.task
    model.to(device)
    started, cpu_started = time.perf_counter(), time.process_time()
    torch.manual_seed(budget.seed)
    objective = _objective(task, budget)
    optimizer = torch.optim.Adam(model.parameters(), lr=budget.lr, betas=budget.betas, eps=budget.eps, weight_decay=budget.weight_decay)
    val_batches = eval_batches(data, "val", budget, device)
    steps_per_epoch = math.ceil(data.num_samples("train") / budget.batch_size)
    primary = primary_metric(task)
    modality = getattr(model, "modality", "text+image")
    best: tuple[float, int, dict[str, Any], dict[str, float]] | None = None
    history, train_s, eval_s = [], 0.0, 0.0
    for epoch in range(budget.epochs):
        tick = time.perf_counter()
        model.train()
        losses = []
        for step, batch in enumerate(data.batches("train", batch_size=budget.batch_size, epoch=epoch, seed=budget.seed)):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(budget, epoch, step, steps_per_epoch)
            optimizer.zero_grad(set_to_none=True)
            loss = _training_loss(objective, model, batch.to(device, non_blocking=True), epoch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{name or type(model).__name__} on {task}: loss is {float(loss)} at epoch {epoch}, step {step}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), budget.grad_clip)
            optimizer.step()
            losses.append(float(loss.detach()))
        tock = time.perf_counter()
        model.eval()
        val = evaluate_task(task, model, val_batches, budget.itm_val_images, modality)
        done = time.perf_counter()
        train_s, eval_s = train_s + tock - tick, eval_s + done - tock
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": sum(losses) / max(1, len(losses)),
                  "val_metric": val[primary], "train_s": tock - tick, "eval_s": done - tock}
        history.append(record)
        if log is not None:
            log(f"{name} {task} epoch {epoch + 1}/{budget.epochs}: loss {record['train_loss']:.4f} val {primary} {val[primary]:.2f} "
                f"({record['train_s']:.1f} s + {record['eval_s']:.1f} s)")
        if best is None or val[primary] > best[0]:
            best = (val[primary], epoch + 1, copy.deepcopy(model.state_dict()), val)
    assert best is not None  # epochs >= 1
    model.load_state_dict(best[2])
    model.eval()
    tick = time.perf_counter()
    test = evaluate_task(task, model, eval_batches(data, "test", budget, device), budget.itm_test_images, modality)
    eval_s += time.perf_counter() - tick
    return BaselineResult(
        name=name,
        task=task,
        parameters=sum(p.numel() for p in model.parameters()),
        best_epoch=best[1],
        val=best[3],
        test=test,
        history=history,
        seconds={"train": train_s, "eval": eval_s, "total": time.perf_counter() - started, "cpu": time.process_time() - cpu_started},
    )


def run_baseline(name: str, data: Any, widths: Widths, budget: TrainBudget, log: Callable[[str], None] | None = None) -> BaselineResult:
    """Build baseline ``name`` for ``data`` (weights seeded from ``budget.seed``) and :func:`train_and_select` it."""
    torch.manual_seed(budget.seed)
    model = build_baseline(name, DataSizes.from_info(data.info), widths)
    return train_and_select(model, data, budget, name=name, log=log)


__all__ = ["BaselineResult", "TrainBudget", "eval_batches", "learning_rate", "run_baseline", "train_and_select"]
