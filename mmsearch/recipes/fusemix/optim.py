"""AdamW and the learning-rate schedule of the FuseMix recipe (as the reference).

Schedule: during epoch 0 the rate rises linearly from ``warmup_lr`` to ``lr`` over the first
``warmup_steps`` optimiser steps and then holds; from epoch 1 on it follows a per-epoch cosine,
``min_lr + (lr - min_lr) * (1 + cos(pi * epoch / epochs)) / 2``. It is a pure function of
(epoch, global step), so restoring a run only needs those two numbers.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from mmsearch.adapters.model import param_groups
from mmsearch.recipes.fusemix.config import FuseMixOptimConfig


def learning_rate(cfg: FuseMixOptimConfig, epochs: int, epoch: int, global_step: int) -> float:
    """Learning rate for the optimiser step ``global_step`` (0-based) taken in ``epoch``."""
    if epoch == 0:
        if cfg.warmup_steps == 0:
            return cfg.lr
        return min(cfg.lr, cfg.warmup_lr + (cfg.lr - cfg.warmup_lr) * global_step / cfg.warmup_steps)
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def build_optimizer(model: nn.Module, cfg: FuseMixOptimConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only (see ``param_groups``)."""
    impl = cfg.implementation
    if impl == "auto":  # one fused kernel per parameter group: fastest on CUDA and on CPU (torch >= 2.4)
        impl = "fused" if device.type in ("cuda", "cpu") else "foreach"
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}[impl]
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, **flags
    )
