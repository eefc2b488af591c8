"""Single-path one-shot with uniform sampling (SPOS / random one-shot).

* Weight step: one path drawn uniformly per block, independent of alpha; only its ops train.
* Architecture step: no gradient. A uniformly drawn path is evaluated on the batch (eval mode,
  no autograd) and the architecture weights are updated as a *record of validation
  performance*: the loss is turned into a z-score against a running mean/std of previous
  architecture-step losses (clipped to +-3; the first two steps only seed the statistics), and for every block the drawn candidate's alpha
  moves towards ``-z`` with rate ``spos_momentum``. ``alpha[b, i]`` is thus an exponential
  average of how much better than usual the paths through candidate i in block b did, and the
  argmax derivation picks, per block, the candidate with the best marginal validation record.
  ``softmax(alpha)`` is reported as the probabilities; the architecture optimiser is not used.

This marginal (per-block) ranking is cheap (one forward per step) and keeps ``derive`` the same
for every strategy; it ignores interactions between blocks, which a full evolutionary search
over paths would capture at many more evaluations.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from mmsearch.nas.strategy_base import STRATEGIES, Objective, SearchStrategy

Z_CLIP = 3.0


@STRATEGIES.register("spos")
class SposStrategy(SearchStrategy):
    name = "spos"

    def __init__(self, config) -> None:
        super().__init__(config)
        self.momentum = config.spos_momentum
        self.loss_mean = 0.0
        self.loss_var = 0.0
        self.count = 0

    def weight_plan(self, supernet, warmup: bool):
        return self.uniform_plan(supernet)

    def standardize(self, loss: float) -> float | None:
        """z-score of ``loss`` against the running statistics (None for the first two losses),
        then fold it into them: exponentially weighted mean/variance with rate
        ``max(momentum, 1 / count)``, i.e. plain averages until there are ``1 / momentum`` losses."""
        z = None
        if self.count >= 2:
            std = max(math.sqrt(self.loss_var), 1e-3 * abs(self.loss_mean), 1e-12)
            z = max(-Z_CLIP, min(Z_CLIP, (loss - self.loss_mean) / std))
        rate = max(self.momentum, 1.0 / (self.count + 1))
        delta = loss - self.loss_mean
        self.loss_mean += rate * delta
        self.loss_var = (1.0 - rate) * (self.loss_var + rate * delta * delta)
        self.count += 1
        return z

    def arch_update(self, supernet, head: nn.Module, objective: Objective, batch: Any, optimizer) -> dict[str, float]:
        plan = self.uniform_plan(supernet)
        modes = (supernet.training, head.training)
        supernet.eval()
        head.eval()
        try:
            with torch.no_grad():
                loss, logs = objective(supernet(batch, head, plan), batch)
        finally:
            supernet.train(modes[0])
            head.train(modes[1])
        value = float(loss)
        if not math.isfinite(value):
            raise FloatingPointError(f"architecture-step loss is {value}")
        z = self.standardize(value)
        if z is None:  # statistics not ready yet: no record update
            return {"loss": value, **logs}
        with torch.no_grad():
            for alpha, chain in zip(supernet.arch_parameters(), (plan.enc, plan.dec)):
                rows = torch.arange(alpha.shape[0], device=alpha.device)
                cols = torch.tensor(chain.index, device=alpha.device)
                alpha[rows, cols] = (1.0 - self.momentum) * alpha[rows, cols] - self.momentum * z
        return {"loss": value, "loss_z": z, **logs}

    def get_extra_state(self) -> dict[str, Any]:
        return {**super().get_extra_state(), "loss_mean": self.loss_mean, "loss_var": self.loss_var, "count": self.count}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state)
        self.loss_mean, self.loss_var, self.count = float(state["loss_mean"]), float(state["loss_var"]), int(state["count"])
