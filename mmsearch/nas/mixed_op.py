"""A searchable block (one op out of a candidate pool) and the plan that says how blocks run.

A :class:`PathPlan` is made by a search strategy for one forward pass; every mixed op reads its
row of it. Modes:

* ``single``: run only the chosen candidate (weight steps of proxyless / spos, the argmax
  architecture, a fixed path). Unchosen candidates do no work and get no gradient.
* ``gated``: ProxylessNAS binary gates (MMnas's ``MODE='full'``): the chosen candidate runs
  with autograd, every other candidate runs without it (its output is a constant), and the
  block returns ``sum_j g_j o_j`` with one-hot gates ``g`` that require grad, so that
  ``dL/dg_j = <dL/dout, o_j>``. The forward value equals the chosen candidate's output exactly.
* ``mix``: DARTS, ``sum_j w_j o_j`` with ``w = softmax(alpha)`` over all candidates.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import Tensor, nn

from mmsearch.ops import build_op

PlanMode = Literal["single", "gated", "mix"]


@dataclass(frozen=True)
class ChainPlan:
    """How the blocks of one chain run: a chosen candidate per block and/or per-candidate weights."""

    mode: PlanMode
    index: tuple[int, ...] | None = None  # chosen candidate per block (single, gated)
    weights: Tensor | None = None  # [depth, K]: one-hot gates (gated) or mixing weights (mix)

    def __post_init__(self) -> None:
        if self.mode in ("single", "gated") and self.index is None:
            raise ValueError(f"a {self.mode!r} plan needs the chosen candidate of every block")
        if self.mode in ("gated", "mix") and self.weights is None:
            raise ValueError(f"a {self.mode!r} plan needs per-candidate weights")

    def runs(self, candidate: int) -> bool:
        """Whether candidate ``candidate`` runs in any block under this plan."""
        if self.mode == "single":
            assert self.index is not None
            return candidate in self.index
        return True

    @staticmethod
    def single(index: Sequence[int]) -> "ChainPlan":
        return ChainPlan("single", index=tuple(int(i) for i in index))


@dataclass(frozen=True)
class PathPlan:
    enc: ChainPlan
    dec: ChainPlan

    @staticmethod
    def single(enc: Sequence[int], dec: Sequence[int]) -> "PathPlan":
        return PathPlan(ChainPlan.single(enc), ChainPlan.single(dec))


class MixedOp(nn.Module):
    """One block of a supernet chain: the candidate ops of a pool, run according to a plan row."""

    def __init__(self, pool: Sequence[str], hidden: int, op_settings: dict[str, object]) -> None:
        super().__init__()
        self.names = tuple(pool)
        self.ops = nn.ModuleDict({name: build_op(name, hidden, **op_settings) for name in self.names})

    def forward(
        self,
        plan: ChainPlan,
        block: int,
        x: Tensor,
        x_mask: Tensor | None,
        y: Tensor | None = None,
        y_mask: Tensor | None = None,
        rel_bias_embed: Tensor | None = None,
    ) -> Tensor:
        ops = list(self.ops.values())
        args = (x, x_mask, y, y_mask, rel_bias_embed)
        if plan.mode == "single":
            assert plan.index is not None
            return ops[plan.index[block]](*args)
        assert plan.weights is not None
        weights = plan.weights[block]
        if plan.mode == "mix":
            out = weights[0] * ops[0](*args)
            for j in range(1, len(ops)):
                out = out + weights[j] * ops[j](*args)
            return out
        assert plan.index is not None
        active = plan.index[block]
        out = weights[active] * ops[active](*args)
        for j, op in enumerate(ops):
            if j != active:
                with torch.no_grad():
                    other = op(*args)
                out = out + weights[j] * other
        return out
