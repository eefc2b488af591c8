"""Training-step times of the fusion-pattern benchmark's models (``bench_fusion_patterns.py --step-rounds``).

Each model at its matched width takes the same training batches (the budget's batch size, the
task's own loss, Adam and the global-norm clip, exactly the step :func:`train_and_select` runs)
in this process, one torch thread. Rounds are interleaved: every round times every model once,
the order rotated from round to round, so a change of load hits all models alike rather than the
last ones. Per model and round: the median wall and CPU seconds per step over ``steps`` steps,
after ``warmup`` untimed ones (first-use allocations, the allocator's warm-up). Each round records
the 1-minute load average before and after it: a figure is only comparable to another measured
at a similar load, and a ratio only within one run.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable, Sequence

import torch
from torch import nn


def _load_1m() -> float:
    return os.getloadavg()[0]


def time_steps(model: nn.Module, objective: Any, batches: Sequence[Any], *, grad_clip: float, lr: float,
               betas: tuple[float, float], eps: float, warmup: int, loss_fn: Callable[..., torch.Tensor]) -> dict[str, float]:
    """Median wall / CPU seconds of one training step (forward, loss, backward, clip, Adam) over
    ``batches[warmup:]``; the first ``warmup`` batches run untimed."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=betas, eps=eps)
    model.train()
    walls, cpus = [], []
    for index, batch in enumerate(batches):
        wall, cpu = time.perf_counter(), time.process_time()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(objective, model, batch, 0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if index >= warmup:
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    if not walls:
        raise ValueError(f"need more than {warmup} batches to time a step; got {len(batches)}")
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "steps": len(walls)}


def measure_step_times(names: Sequence[str], build: Callable[[str], nn.Module], batches: Sequence[Any], objective: Any,
                       budget: Any, *, rounds: int, warmup: int, loss_fn: Callable[..., torch.Tensor]) -> dict[str, Any]:
    """Per model: each round's median step times, and their median over rounds; per round the load."""
    from mmsearch.threads import torch_threads

    with torch_threads(1):
        return _measure(names, build, batches, objective, budget, rounds=rounds, warmup=warmup, loss_fn=loss_fn)


def _measure(names: Sequence[str], build: Callable[[str], nn.Module], batches: Sequence[Any], objective: Any,
             budget: Any, *, rounds: int, warmup: int, loss_fn: Callable[..., torch.Tensor]) -> dict[str, Any]:
    per_model: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    loads = []
    for round_index in range(rounds):
        order = list(names[round_index % len(names):]) + list(names[:round_index % len(names)])
        before = _load_1m()
        for name in order:
            torch.manual_seed(budget.seed)
            model = build(name)
            per_model[name].append(time_steps(model, objective, batches, grad_clip=budget.grad_clip, lr=budget.lr,
                                              betas=budget.betas, eps=budget.eps, warmup=warmup, loss_fn=loss_fn))
        loads.append({"round": round_index, "order": order, "load_1m_before": before, "load_1m_after": _load_1m()})
    models = {name: {"rounds": runs, "wall_s": statistics.median(r["wall_s"] for r in runs),
                     "cpu_s": statistics.median(r["cpu_s"] for r in runs)} for name, runs in per_model.items()}
    return {"batch_size": budget.batch_size, "steps_per_round": len(batches) - warmup, "warmup_steps": warmup,
            "threads": 1, "rounds": loads, "models": models}


__all__ = ["measure_step_times", "time_steps"]
