"""Few-shot supernets (Zhao et al., "Few-shot Neural Architecture Search", ICML 2021) as an estimator.

A one-shot supernet gives every architecture the same shared weights, and an op's weights are
trained for the average of all the paths through it: the co-adaptation that makes the one-shot
estimate rank architectures poorly. Few-shot NAS splits the space on one block's choice into K
sub-supernets, one per candidate op of that block, each starting from the trained supernet
(the paper's transfer) and fine-tuned only on the paths that make its choice; an architecture is
then scored by the sub-supernet of its own choice, with weights shared by 1/K of the space.

Here a sub-supernet is fine-tuned on uniform single paths (SPOS-style: every remaining candidate of
every other block trains equally often) with the search's weight optimiser settings, for
``epochs`` passes over the search's ``weights`` part; the scores are the task's primary metric on
``val``, as :func:`mmsearch.evaluation.oneshot.supernet_estimates` computes them. Cost: K
fine-tunings on top of the search. Plain torch, no Ray.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from mmsearch.evaluation.oneshot import load_supernet, score_paths
from mmsearch.nas import ArchSpec
from mmsearch.nas.mixed_op import PathPlan
from mmsearch.nas.steps import make_weight_optimizer
from mmsearch.recipes.search.config import SearchConfig
from mmsearch.tasks import make_objective

CHAINS = ("enc", "dec")


def parse_block(block: str) -> tuple[str, int]:
    """``"dec.0"`` -> ("dec", 0): the block whose choice splits the space."""
    chain, _, index = block.partition(".")
    if chain not in CHAINS or not index.isdigit():
        raise ValueError(f"few-shot split block {block!r}: want <chain>.<index> with chain one of {list(CHAINS)}, e.g. dec.0")
    return chain, int(index)


def uniform_plan(pools: Mapping[str, tuple[str, ...]], depths: Mapping[str, int], fixed: tuple[str, int, int],
                 generator: torch.Generator) -> PathPlan:
    """A single path drawn uniformly per block, except block ``fixed = (chain, index, op index)``."""
    chosen = {}
    for chain in CHAINS:
        draw = torch.randint(len(pools[chain]), (depths[chain],), generator=generator).tolist()
        if chain == fixed[0]:
            draw[fixed[1]] = fixed[2]
        chosen[chain] = draw
    return PathPlan.single(chosen["enc"], chosen["dec"])


def fine_tune(supernet: Any, head: torch.nn.Module, cfg: SearchConfig, data: Any, fixed: tuple[str, int, int], *,
              epochs: int, seed: int) -> dict[str, float]:
    """Train ``supernet`` (a copy) on uniform single paths that keep ``fixed``; returns steps and CPU-seconds."""
    s = cfg.search
    objective = make_objective(cfg.head)
    optimizer = make_weight_optimizer(supernet, head, lr=s.weight_lr, betas=s.weight_betas, eps=s.weight_eps,
                                      weight_decay=s.weight_decay)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    depths = {chain: len(supernet.encoder if chain == "enc" else supernet.decoder) for chain in CHAINS}
    generator = torch.Generator().manual_seed(seed)
    supernet.train()
    head.train()
    steps, cpu = 0, time.process_time()
    for epoch in range(1, epochs + 1):
        for batch in data.batches("weights", batch_size=s.batch_size, epoch=epoch, seed=seed, shuffle=True, drop_last=s.drop_last):
            plan = uniform_plan(supernet.pools, depths, fixed, generator)
            pairs = objective.prepare(lambda b, plan=plan: supernet(b, head, plan), batch, epoch - 1)
            optimizer.zero_grad(set_to_none=True)
            loss, _ = objective.loss_from_outputs(supernet(pairs, head, plan), pairs)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"few-shot fine-tuning ({fixed}): loss is {float(loss)} at step {steps + 1}")
            loss.backward()
            if s.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], s.grad_clip)
            optimizer.step()
            steps += 1
            if s.max_steps_per_epoch is not None and steps >= epoch * s.max_steps_per_epoch:
                break
    return {"steps": steps, "cpu_s": time.process_time() - cpu}


def fewshot_estimates(cfg: SearchConfig, output_dir: str | Path, data: Any, specs: Mapping[str, Mapping[str, Any]], *,
                      block: str = "dec.0", epochs: int = 1, seed: int = 0) -> dict[str, Any]:
    """label -> val primary metric of each architecture in ``specs``, each scored by the sub-supernet
    (fine-tuned from the search in ``output_dir``) that shares its choice at ``block``; with the
    fine-tunings' steps and CPU-seconds per choice."""
    base, base_head, cfg = load_supernet(cfg, output_dir, data.info)
    chain, index = parse_block(block)
    pool = base.pools[chain]
    groups: dict[str, dict[str, ArchSpec]] = {}
    for label, raw in specs.items():
        spec = ArchSpec.from_dict(raw)
        ops = spec.enc if chain == "enc" else spec.dec
        if index >= len(ops):
            raise ValueError(f"few-shot split block {block}: {label} has {len(ops)} {chain} blocks")
        groups.setdefault(ops[index], {})[label] = spec
    scores: dict[str, float] = {}
    cost: dict[str, dict[str, float]] = {}
    for op, members in groups.items():
        supernet, head = copy.deepcopy(base), copy.deepcopy(base_head)
        cost[op] = fine_tune(supernet, head, cfg, data, (chain, index, pool.index(op)), epochs=epochs, seed=seed)
        scores.update(score_paths(supernet.eval(), head.eval(), cfg, data, members))
    return {"scores": scores, "block": block, "epochs": epochs, "fine_tuning": cost}


__all__ = ["fewshot_estimates", "fine_tune", "parse_block", "uniform_plan"]
