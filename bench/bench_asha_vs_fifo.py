"""ASHA's value: the same search space run with ASHA and with FIFO (every trial to max_t).

Both runs use the same grid of real supernet searches (``run_search``, the shipped VQA search
config on generated data): weight learning rates x seeds, so that some configurations are
clearly worse (ASHA has something to stop) and every configuration has several seeds (the noise
of the metric is measured, not assumed). Reported per scheduler:

* compute: trial-epochs run, CPU-seconds of the trial processes (setup included) and the trials'
  own training seconds (sum of ``epoch_s``), wall time;
* the best trial (by the experiment metric ``val_metric``: the derived architecture's validation
  VQA accuracy with the supernet's weights), its metric, configuration and architecture.

Noise: for every configuration, the spread across seeds of its best ``val_metric`` in the FIFO
run (all of them ran to max_t); the headline is the standard deviation across seeds of the best
configuration, and the mean over configurations. ASHA's best is "within noise" when it is no
more than one such standard deviation below FIFO's best.

    python bench/bench_asha_vs_fifo.py           # 3 weight LRs x 3 seeds, grace 3, max_t 27, rf 3 (~10 min on 2 cores)
    python bench/bench_asha_vs_fifo.py --tiny    # 4 trials x 3 epochs: checks that it works

Writes ``bench/results/asha_vs_fifo.json`` (atomically) with the machine, the command and the figures.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_orchestration import (  # noqa: E402  (bench/ is not a package)
    RESULTS,
    SEARCH_CONFIG,
    machine,
    run_tune,
    search_base_config,
    start_ray,
    timed_search_recipe,
)

from mmsearch.io import atomic_write_json  # noqa: E402
from mmsearch.machine import Provenance  # noqa: E402
from mmsearch.report.collect import collect_experiment  # noqa: E402


def run_scheduler(name: str, scheduler: dict[str, Any], args: argparse.Namespace, storage: str, slots: int) -> dict[str, Any]:
    base = search_base_config(args.epochs, threads=1)
    space = {"search.weight_lr": {"grid": args.weight_lrs}, "seed": {"grid": list(range(args.seeds))}}
    outcome, wall = run_tune(timed_search_recipe(args.train_images, args.val_images), base, name=name, storage=storage,
                             search_space=space, cpus_per_trial=1.0, concurrency=slots, scheduler=scheduler)
    data = collect_experiment(outcome.location)
    trials = []
    for t in data.trials:
        last = t.last
        trials.append({
            "trial_id": t.trial_id, "config": t.config, "stop_reason": t.stop_reason, "epochs": t.last_epoch,
            "best_val_metric": t.best_metric, "best_epoch": t.best_epoch, "cpu_s": last.get("bench_cpu_s"),
            "train_s": sum(float(r["epoch_s"]) for r in t.history), "arch": last.get("arch"),
        })
    best = data.best_trial
    return {
        "scheduler": scheduler,
        "rungs": data.rungs,
        "wall_s": wall,
        "trial_epochs": sum(t["epochs"] or 0 for t in trials),
        "cpu_s": sum(t["cpu_s"] or 0.0 for t in trials),
        "train_s": sum(t["train_s"] for t in trials),
        "best": None if best is None else {
            "trial_id": best.trial_id, "config": best.config, "val_metric": best.best_metric, "epoch": best.best_epoch,
            "arch": next((r.get("arch") for r in best.history if r.get("epoch") == best.best_epoch), None),
        },
        "trials": trials,
    }


def seed_noise(fifo: dict[str, Any], key: str = "search.weight_lr") -> dict[str, Any]:
    """Spread across seeds of each configuration's best metric (FIFO: every trial ran to max_t)."""
    groups: dict[Any, list[float]] = {}
    for t in fifo["trials"]:
        if t["best_val_metric"] is not None:
            groups.setdefault(t["config"].get(key), []).append(t["best_val_metric"])
    per_config = {
        str(k): {"values": v, "mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                 "range": max(v) - min(v)}
        for k, v in groups.items()
    }
    best_config = max(per_config, key=lambda k: per_config[k]["mean"])
    return {
        "by_config": per_config,
        "best_config": best_config,
        "best_config_std": per_config[best_config]["std"],
        "mean_std": statistics.mean(c["std"] for c in per_config.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weight-lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=27, help="max_t: every FIFO trial's epochs (rungs 3, 9, 27)")
    parser.add_argument("--grace-period", type=int, default=3, help="past the search warm-up (2 epochs, architecture weights frozen)")
    parser.add_argument("--reduction-factor", type=float, default=3.0)
    parser.add_argument("--train-images", type=int, default=1600)
    parser.add_argument("--val-images", type=int, default=300, help="600 questions: binomial noise ~2 points at 50%%")
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--tiny", action="store_true", help="2 LRs x 2 seeds x 3 epochs on small data: checks that it works")
    parser.add_argument("--out", type=Path, default=RESULTS / "asha_vs_fifo.json")
    args = parser.parse_args(argv)
    provenance = Provenance(__file__, argv)
    if args.tiny:
        args.weight_lrs, args.seeds, args.epochs, args.train_images, args.val_images = [3e-4, 3e-3], 2, 3, 80, 30

    ray_start_s, cluster_cpus = start_ray(args.num_cpus)
    num_trials = len(args.weight_lrs) * args.seeds
    slots = max(1, min(int(cluster_cpus), num_trials))
    storage = tempfile.mkdtemp(prefix="bench-asha-")
    started = time.perf_counter()
    asha = run_scheduler("asha", {"name": "asha", "grace_period": args.grace_period,
                                  "reduction_factor": args.reduction_factor}, args, storage, slots)
    fifo = run_scheduler("fifo", {"name": "fifo"}, args, storage, slots)
    noise = seed_noise(fifo)

    saving = {k: fifo[k] / asha[k] if asha[k] else None for k in ("trial_epochs", "cpu_s", "train_s", "wall_s")}
    gap = fifo["best"]["val_metric"] - asha["best"]["val_metric"]
    within = gap <= noise["best_config_std"]
    print(f"\n{num_trials} trials ({len(args.weight_lrs)} weight LRs x {args.seeds} seeds), max_t {args.epochs} epochs, "
          f"{slots} at once; ASHA grace {args.grace_period}, rf {args.reduction_factor:g}, rungs {asha['rungs']}")
    print(f"{'':8}{'trial-epochs':>14}{'CPU-s':>10}{'train-s':>10}{'wall-s':>9}{'best val_metric':>17}  best config")
    for name, run in (("ASHA", asha), ("FIFO", fifo)):
        best = run["best"]
        print(f"{name:8}{run['trial_epochs']:>14}{run['cpu_s']:>10.0f}{run['train_s']:>10.0f}{run['wall_s']:>9.0f}"
              f"{best['val_metric']:>17.2f}  {best['config']}")
    print(f"ASHA used {saving['trial_epochs']:.2f}x fewer trial-epochs, {saving['cpu_s']:.2f}x fewer CPU-seconds, "
          f"{saving['wall_s']:.2f}x less wall time")
    print(f"seed noise (FIFO, std of best val_metric across {args.seeds} seeds): best config {noise['best_config_std']:.2f}, "
          f"mean over configs {noise['mean_std']:.2f}; FIFO best - ASHA best = {gap:.2f} -> "
          f"{'within' if within else 'NOT within'} noise")
    result = {
        "benchmark": "asha_vs_fifo",
        "command": provenance.command,
        "settings": {**{k: v for k, v in vars(args).items() if k != "out"}, "trials": num_trials, "slots": slots,
                     "config": str(SEARCH_CONFIG.relative_to(SEARCH_CONFIG.parents[2])), "metric": "val_metric (max)"},
        "machine": machine(),
        "ray_start_s": ray_start_s,
        "total_s": time.perf_counter() - started,
        "asha": asha,
        "fifo": fifo,
        "compute_saving": saving,
        "noise": noise,
        "best_gap": gap,
        "best_within_noise": within,
        "grid": [list(c) for c in itertools.product(args.weight_lrs, range(args.seeds))],
        "provenance": provenance.block(),
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
