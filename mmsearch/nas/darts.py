"""DARTS (first order): every block outputs ``sum_j softmax(alpha)_j o_j`` over all candidates.

* Weight step: the mixture with the mixing weights held constant (no alpha gradient); every
  candidate runs and is trained.
* Architecture step: the same mixture, gradient only w.r.t. alpha (``torch.autograd.grad``;
  no weight gradients are computed), one step of the architecture optimiser.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmsearch.nas.mixed_op import ChainPlan, PathPlan
from mmsearch.nas.strategy_base import STRATEGIES, Objective, SearchStrategy, apply_alpha_grads


def mix_plan(enc_alpha: torch.Tensor, dec_alpha: torch.Tensor) -> PathPlan:
    return PathPlan(ChainPlan("mix", weights=torch.softmax(enc_alpha, -1)), ChainPlan("mix", weights=torch.softmax(dec_alpha, -1)))


@STRATEGIES.register("darts")
class DartsStrategy(SearchStrategy):
    name = "darts"

    def weight_plan(self, supernet, warmup: bool) -> PathPlan:
        enc_alpha, dec_alpha = supernet.arch_parameters()
        return mix_plan(enc_alpha.detach(), dec_alpha.detach())

    def arch_update(self, supernet, head: nn.Module, objective: Objective, batch: Any, optimizer) -> dict[str, float]:
        alphas = tuple(supernet.arch_parameters())
        loss, logs = objective(supernet(batch, head, mix_plan(*alphas)), batch)
        grads = torch.autograd.grad(loss, alphas, allow_unused=True)
        apply_alpha_grads(supernet, tuple(torch.zeros_like(a) if g is None else g for a, g in zip(alphas, grads)), optimizer)
        return {"loss": float(loss.detach()), **logs}
