"""The optimisation steps a search (or retraining) recipe calls, and their optimisers.

Parameter groups: network weights (front end, ops, head) vs architecture weights (alphas),
each with its own optimiser (MMnas defaults: Adam(0.9, 0.98, eps 1e-9) lr 4e-4 with grad-norm
clip 1.0 for weights; Adam(lr 0.1, betas (0, 0.999)) for alphas).

Ops that a weight step does not run get no gradient (``grad is None``; gradients are zeroed
with ``set_to_none=True``), so Adam skips them entirely: neither their weights nor their
moment estimates move. (MMnas adds ``0 * sum(all params)`` to the loss for DDP, which gives
every op a zero gradient, and Adam's momentum then keeps moving ops that were not sampled.)

``objective(outputs, batch) -> (loss, logs)`` is the caller's task loss (see
:mod:`mmsearch.heads`); ``logs`` are floats merged into the step's returned dict.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn

from mmsearch.batch import MultimodalBatch
from mmsearch.nas.strategy_base import Objective
from mmsearch.nas.supernet import Supernet

WEIGHT_LR = 4e-4
WEIGHT_BETAS = (0.9, 0.98)
WEIGHT_EPS = 1e-9
ARCH_LR = 0.1
ARCH_BETAS = (0.0, 0.999)
ARCH_EPS = 1e-8


def network_weights(net: nn.Module, head: nn.Module | None = None) -> list[nn.Parameter]:
    """Trainable network weights of a supernet (alphas excluded) or derived net, plus the head's."""
    # Supernets (MMnas's and the fusion one) keep their architecture weights out of this group.
    params = net.weight_parameters() if hasattr(net, "arch_parameters") else list(net.parameters())
    if head is not None:
        params += list(head.parameters())
    return [p for p in params if p.requires_grad]


def make_weight_optimizer(
    net: nn.Module,
    head: nn.Module | None = None,
    lr: float = WEIGHT_LR,
    betas: tuple[float, float] = WEIGHT_BETAS,
    eps: float = WEIGHT_EPS,
    weight_decay: float = 0.0,
    fused: bool | None = None,
) -> torch.optim.Adam:
    """Adam over the network weights (+ head). ``fused=None`` uses the fused kernel when available."""
    params = network_weights(net, head)
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=_fused(params, fused))


def make_arch_optimizer(
    supernet: Supernet,
    lr: float = ARCH_LR,
    betas: tuple[float, float] = ARCH_BETAS,
    eps: float = ARCH_EPS,
    weight_decay: float = 0.0,
) -> torch.optim.Adam:
    """Adam over the architecture weights only."""
    return torch.optim.Adam(supernet.arch_parameters(), lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def _fused(params: list[nn.Parameter], fused: bool | None) -> bool | None:
    if fused is not None:
        return fused
    # torch's fused Adam handles float tensors on CPU and CUDA; it skips params without a grad.
    ok = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return True if ok and params else None


def _finite_loss(loss: torch.Tensor, what: str) -> float:
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(f"{what} loss is {value}")
    return value


def _optimise(
    loss: torch.Tensor, params: list[nn.Parameter], optimizer: torch.optim.Optimizer, clip: float | None
) -> float | None:
    loss.backward()
    grad_norm = None
    if clip is not None and clip > 0:
        grad_norm = float(torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], clip, foreach=True))
    optimizer.step()
    return grad_norm


def weight_step(
    supernet: Supernet,
    head: nn.Module,
    objective: Objective,
    batch: MultimodalBatch,
    optimizer: torch.optim.Optimizer,
    clip: float | None = 1.0,
    warmup: bool = False,
) -> dict[str, Any]:
    """One weight step on the path(s) the strategy picks; alphas are not touched.

    ``warmup`` tells the strategy the architecture weights are frozen (proxyless may then
    sample uniformly, see ``SupernetConfig.warmup_sampling``).
    """
    plans = supernet.strategy.weight_plans(supernet, warmup)
    optimizer.zero_grad(set_to_none=True)
    params = network_weights(supernet, head)
    values, logs = [], {}
    for plan in plans[:-1]:  # several paths (FairNAS): their gradients add up, one optimiser step
        loss, logs = objective(supernet(batch, head, plan), batch)
        values.append(_finite_loss(loss, "weight-step"))
        loss.backward()
    loss, logs = objective(supernet(batch, head, plans[-1]), batch)
    values.append(_finite_loss(loss, "weight-step"))
    grad_norm = _optimise(loss, params, optimizer, clip)
    out: dict[str, Any] = {**logs, "loss": sum(values) / len(values)}
    if grad_norm is not None:
        out["grad_norm"] = grad_norm
    return out


def arch_step(
    supernet: Supernet,
    head: nn.Module,
    objective: Objective,
    batch: MultimodalBatch,
    optimizer: torch.optim.Optimizer | None,
) -> dict[str, Any]:
    """One architecture step (strategy-specific); network weights and their gradients are untouched."""
    return supernet.strategy.arch_update(supernet, head, objective, batch, optimizer)


def train_step(
    net: nn.Module,
    head: nn.Module,
    objective: Objective,
    batch: MultimodalBatch,
    optimizer: torch.optim.Optimizer,
    clip: float | None = 1.0,
) -> dict[str, Any]:
    """One training step of a fixed network (a :class:`~mmsearch.nas.derived.DerivedNet`)."""
    optimizer.zero_grad(set_to_none=True)
    loss, logs = objective(net(batch, head), batch)
    value = _finite_loss(loss, "training-step")
    grad_norm = _optimise(loss, network_weights(net, head), optimizer, clip)
    out: dict[str, Any] = {"loss": value, **logs}
    if grad_norm is not None:
        out["grad_norm"] = grad_norm
    return out


def parameter_count(params: Iterable[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)
