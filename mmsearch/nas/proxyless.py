"""ProxylessNAS binary gates, as MMnas searches (``MixedOp.MODE = 'full'``).

* Weight step: one path, every block's op drawn from ``softmax(alpha)`` (MMnas draws from the
  current distribution even during warm-up, i.e. from the MCAN-like prior; with
  ``warmup_sampling="uniform"`` warm-up paths are uniform instead). Only the sampled ops run, so
  only they get gradients.
* Architecture step: a path is drawn the same way; every candidate runs forward, the drawn one
  with autograd, the others as constants, combined through one-hot gates ``g``. Backprop is
  only w.r.t. the gates (``torch.autograd.grad``; no weight gradients are computed) giving
  ``dL/dg_j = <dL/dout, o_j>``, and the BinaryConnect estimate
  ``dL/dalpha_i = sum_j dL/dg_j p_j (delta_ij - p_i) = p_i (dL/dg_i - sum_j p_j dL/dg_j)``
  is applied with the architecture optimiser.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mmsearch.nas.mixed_op import ChainPlan, PathPlan
from mmsearch.nas.strategy_base import STRATEGIES, Objective, SearchStrategy, apply_alpha_grads


def binary_connect_grad(alpha: Tensor, gate_grad: Tensor) -> Tensor:
    """``dL/dalpha`` [depth, K] from ``dL/dg`` [depth, K] through ``p = softmax(alpha)`` per block."""
    p = torch.softmax(alpha.detach(), dim=-1)
    g = gate_grad.to(p.dtype)
    return p * (g - (g * p).sum(dim=-1, keepdim=True))


def one_hot_gates(index: tuple[int, ...], k: int, like: Tensor) -> Tensor:
    gates = torch.zeros(len(index), k, dtype=like.dtype, device=like.device)
    gates[torch.arange(len(index)), torch.tensor(index)] = 1.0
    return gates.requires_grad_(True)


@STRATEGIES.register("proxyless")
class ProxylessStrategy(SearchStrategy):
    name = "proxyless"

    def __init__(self, config) -> None:
        super().__init__(config)
        self.warmup_uniform = config.warmup_sampling == "uniform"

    def weight_plan(self, supernet, warmup: bool) -> PathPlan:
        if warmup and self.warmup_uniform:
            return self.uniform_plan(supernet)
        return PathPlan(
            ChainPlan.single(self.sample(self.probabilities(supernet.enc_alpha))),
            ChainPlan.single(self.sample(self.probabilities(supernet.dec_alpha))),
        )

    def arch_update(self, supernet, head: nn.Module, objective: Objective, batch: Any, optimizer) -> dict[str, float]:
        enc_alpha, dec_alpha = supernet.arch_parameters()
        enc_index = self.sample(self.probabilities(enc_alpha))
        dec_index = self.sample(self.probabilities(dec_alpha))
        enc_gates = one_hot_gates(enc_index, enc_alpha.shape[1], enc_alpha)
        dec_gates = one_hot_gates(dec_index, dec_alpha.shape[1], dec_alpha)
        plan = PathPlan(ChainPlan("gated", enc_index, enc_gates), ChainPlan("gated", dec_index, dec_gates))
        loss, logs = objective(supernet(batch, head, plan), batch)
        grads = torch.autograd.grad(loss, (enc_gates, dec_gates), allow_unused=True)
        gate_grads = [torch.zeros_like(g) if d is None else d for g, d in zip((enc_gates, dec_gates), grads)]
        apply_alpha_grads(
            supernet,
            (binary_connect_grad(enc_alpha, gate_grads[0]), binary_connect_grad(dec_alpha, gate_grads[1])),
            optimizer,
        )
        return {"loss": float(loss.detach()), **logs}
