"""Search strategies: how a supernet's weight step picks paths and how its architecture step
updates the architecture weights. Registered by name in :data:`STRATEGIES`.

A strategy is a small ``nn.Module`` without parameters owned by the supernet. Its random state
(the path-sampling generator, seeded from ``SupernetConfig.seed``) travels in the supernet's
``state_dict`` through ``get_extra_state``, so a resumed search samples the same paths.

Interface used by :mod:`mmsearch.nas.steps`:

* ``weight_plan(supernet, warmup) -> PathPlan``: the path(s) a weight step trains;
  ``weight_plans`` (default: that one plan) for strategies that train several paths per step,
  their gradients summed into one optimiser step (FairNAS);
* ``arch_update(supernet, head, objective, batch, optimizer) -> dict``: one architecture step
  (it must never change network weights);
* ``probabilities(alpha) -> Tensor``: per-block candidate probabilities paths are drawn from.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor, nn

from mmsearch.nas.mixed_op import ChainPlan, PathPlan
from mmsearch.registry import Registry

if TYPE_CHECKING:
    from mmsearch.nas.net_config import SupernetConfig
    from mmsearch.nas.supernet import Supernet

STRATEGIES: Registry[Callable[["SupernetConfig"], "SearchStrategy"]] = Registry("strategy")

#: ``objective(outputs, batch) -> (loss, logs)``, given by the caller (task losses live in heads).
Objective = Callable[..., tuple[Tensor, dict[str, float]]]


class SearchStrategy(nn.Module):
    name = "base"

    def __init__(self, config: "SupernetConfig") -> None:
        super().__init__()
        self.seed = config.seed
        self.generator = torch.Generator().manual_seed(config.seed)

    # --- path sampling -------------------------------------------------------------------
    def sample(self, probs: Tensor) -> tuple[int, ...]:
        """One candidate per block (row of ``probs`` [depth, K]) from this strategy's generator."""
        return tuple(torch.multinomial(probs.detach().float().cpu(), 1, generator=self.generator).squeeze(1).tolist())

    def sample_uniform(self, depth: int, k: int) -> tuple[int, ...]:
        return self.sample(torch.full((depth, k), 1.0 / k))

    def uniform_plan(self, supernet: "Supernet") -> PathPlan:
        (de, ke), (dd, kd) = supernet.enc_alpha.shape, supernet.dec_alpha.shape
        return PathPlan(ChainPlan.single(self.sample_uniform(de, ke)), ChainPlan.single(self.sample_uniform(dd, kd)))

    def probabilities(self, alpha: Tensor) -> Tensor:
        return torch.softmax(alpha.detach().float(), dim=-1)

    # --- steps -----------------------------------------------------------------------------
    def weight_plan(self, supernet: "Supernet", warmup: bool) -> PathPlan:
        raise NotImplementedError

    def weight_plans(self, supernet: "Supernet", warmup: bool) -> list[PathPlan]:
        return [self.weight_plan(supernet, warmup)]

    def arch_update(self, supernet: "Supernet", head: nn.Module, objective: Objective, batch: Any, optimizer: torch.optim.Optimizer | None) -> dict[str, float]:
        raise NotImplementedError

    # --- exact resume ----------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def extra_repr(self) -> str:
        return f"name={self.name!r}, seed={self.seed}"


def apply_alpha_grads(supernet: "Supernet", grads: tuple[Tensor, Tensor], optimizer: torch.optim.Optimizer) -> None:
    """Set the architecture weights' gradients and take one optimiser step on them only."""
    if optimizer is None:
        raise ValueError("this strategy's architecture step needs the architecture optimizer")
    alpha_ids = {id(a) for a in supernet.arch_parameters()}
    if any(id(p) not in alpha_ids for group in optimizer.param_groups for p in group["params"]):
        raise ValueError("the architecture optimizer must hold only the supernet's architecture weights (arch_parameters())")
    for alpha, grad in zip(supernet.arch_parameters(), grads):
        alpha.grad = grad.detach().to(alpha.dtype)
    optimizer.step()
    for alpha in supernet.arch_parameters():
        alpha.grad = None
