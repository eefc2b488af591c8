"""Strictly fair single-path one-shot (FairNAS, Chu et al. 2021).

SPOS draws one path per weight step, so over a search some candidates of a block get more
updates than others, and the shared weights favour whoever was drawn more: one reason one-shot
estimates rank architectures poorly. FairNAS removes that bias. A weight step trains ``m`` paths
(``m`` = the largest candidate pool) built from one random permutation per block, so that inside
the step every candidate of every block runs equally often (once each in a block of ``m``
candidates; ``m / K`` times in a block of ``K``, when K divides m); their gradients are summed
and the optimiser steps once. A step thus costs ``m`` forward/backward passes.

The architecture step is SPOS's (a z-scored validation record per candidate, see
:mod:`mmsearch.nas.spos`): FairNAS itself ranks architectures by evaluating them with the shared
weights, which is what the one-shot estimate (``mmsearch.evaluation.oneshot``) does with any
finished search.
"""
from __future__ import annotations

import math

import torch

from mmsearch.nas.mixed_op import ChainPlan, PathPlan
from mmsearch.nas.spos import SposStrategy
from mmsearch.nas.strategy_base import STRATEGIES


@STRATEGIES.register("fair")
class FairStrategy(SposStrategy):
    name = "fair"

    def _fair_chain(self, depth: int, k: int, paths: int) -> list[tuple[int, ...]]:
        """``paths`` candidate sequences for a chain of ``depth`` blocks of ``k`` candidates each:
        per block, a permutation of the candidates (repeated to ``paths`` entries) from this
        strategy's generator."""
        columns = []
        for _ in range(depth):
            repeated = torch.arange(k).repeat(math.ceil(paths / k))
            columns.append(repeated[torch.randperm(len(repeated), generator=self.generator)][:paths].tolist())
        return [tuple(column[j] for column in columns) for j in range(paths)]

    def weight_plans(self, supernet, warmup: bool) -> list[PathPlan]:
        (de, ke), (dd, kd) = supernet.enc_alpha.shape, supernet.dec_alpha.shape
        paths = max(ke, kd)
        enc, dec = self._fair_chain(de, ke, paths), self._fair_chain(dd, kd, paths)
        return [PathPlan(ChainPlan.single(e), ChainPlan.single(d)) for e, d in zip(enc, dec)]

    def weight_plan(self, supernet, warmup: bool) -> PathPlan:
        return self.weight_plans(supernet, warmup)[0]
