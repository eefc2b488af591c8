"""Orchestration efficiency: how much of the machine's time goes into the trials' own training
when Ray Tune runs many short supernet searches side by side on one machine.

Runs ``--trials`` real searches (``mmsearch.recipes.search.run_search``, the shipped VQA search
config on generated data, ``--epochs`` epochs each) through ``run_experiment`` with FIFO (every
trial runs every epoch, so the figure measures orchestration, not early stopping), then:

    efficiency = sum over trials of (own training seconds x CPUs per trial) / (wall x cores used)

where a trial's own training time is the sum of its reported per-epoch ``epoch_s`` (weight and
architecture steps + validation), wall is ``run_experiment`` from call to return (Ray already
started), and cores used = min(concurrent trials x CPUs per trial, cluster CPUs). The rest of the
machine's time is split into where it went, from per-trial timestamps the trials report
(process start, recipe entry, every report):

* ``actor_start``: trial process start -> the recipe is entered (Ray worker boot, the trainable
  unpickled, Tune's session, the trial config validated and written);
* ``imports``: importing the search recipe (torch, the model library) in the fresh process;
* ``data_setup``: generating the trial's data (a store-backed run opens a store instead), once per
  worker process as in the jobs (``recipes/shared_data.py``: a reused process's next trial gets it);
* ``model_setup``: the rest until the first report, minus the first epoch and one report cycle
  (config resolution, supernet and optimisers built);
* ``epoch_reporting``: between epochs, outside ``epoch_s``: derived-arch bookkeeping, the
  checkpoint (``torch.save``), ``tune.report`` and mirroring the trial's files to storage;
* ``slots_idle``: everything else: Tune starting and finishing, scheduling the next trial,
  a finished trial's teardown, and an idle slot when fewer trials are left than slots.

A second, separate measurement runs the same number of no-op trials (same imports, one report
per epoch, no work) to give the fixed cost of starting and finishing a trial, in slot-seconds per
trial. ``--reuse-actors on`` (the jobs' default, ``tune.reuse_actors``: CPU trials run in the
processes of finished ones) or ``off`` (a fresh Ray worker per trial). A trial in a reused
process counts no ``actor_start``; the hand-over between its process's trials is ``slots_idle``.

    python bench/bench_orchestration.py            # 8 trials x 6 epochs, 2 at once (~5 min on 2 cores)
    python bench/bench_orchestration.py --tiny     # a 1-2 minute check that it works
    python bench/bench_orchestration.py --cpus-per-trial 2   # one trial at a time, 2 torch threads

Writes ``bench/results/orchestration.json`` (atomically) with the machine, the command and the figures.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads steal the other trial's core

from mmsearch.config import read_yaml  # noqa: E402
from mmsearch.io import atomic_write_json  # noqa: E402
from mmsearch.machine import Provenance, cpu_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SEARCH_CONFIG = REPO / "configs" / "search" / "vqa.yaml"


# --- what runs inside a trial -------------------------------------------------------------------
class TimedContext:
    """Wraps the trial's RunContext; adds wall-clock and CPU timestamps to every report."""

    def __init__(self, inner: Any, fixed: dict[str, float]) -> None:
        self._inner, self._fixed = inner, fixed
        self._report_s = 0.0
        self.rank, self.world_size = inner.rank, inner.world_size

    @property
    def output_dir(self) -> Path:
        return self._inner.output_dir

    def restored_checkpoint(self) -> Path | None:
        return self._inner.restored_checkpoint()

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        start = time.time()
        stamped = {**metrics, **self._fixed, "bench_report_t": start, "bench_cpu_s": time.process_time(),
                   "bench_reports_before_s": self._report_s}
        self._inner.report(stamped, checkpoint_dir)
        self._report_s += time.time() - start


def _process_start() -> float:
    import psutil

    return psutil.Process().create_time()


def timed_search_recipe(train_images: int, val_images: int) -> Callable[..., Any]:
    """The search recipe on generated data of the given size, with timestamps in its reports."""

    def timed_search(cfg: Any, context: Any = None) -> None:
        entered = time.time()
        from mmsearch.data.synthetic import SyntheticTaskData
        from mmsearch.recipes.search.recipe import run_search  # torch and the model library, in a fresh process

        from mmsearch.recipes.shared_data import open_shared

        imported = time.time()
        # As a job's trial opens its data (run_search): once per worker process for equal data configs.
        data = open_shared(context, ("bench", cfg.data, train_images, val_images), lambda: SyntheticTaskData(
            cfg.data.task, train_images=train_images, val_images=val_images, test_images=2,
            arch_fraction=cfg.data.arch_fraction, split_seed=cfg.data.split_seed))
        fixed = {"bench_process_t": _process_start(), "bench_pid": os.getpid(), "bench_entered_t": entered,
                 "bench_imports_s": imported - entered,
                 "bench_data_s": time.time() - imported}
        run_search(cfg, TimedContext(context, fixed), task_data=data)

    return timed_search


def noop_recipe(cfg: Any, context: Any = None) -> None:
    """No work: the same imports as a search trial, then one report per epoch (the fixed cost of a trial)."""
    import mmsearch.recipes.search  # noqa: F401  (what a real trial imports)

    for epoch in range(1, cfg.search.epochs + 1):
        context.report({"epoch": epoch, "val_metric": 0.0})


# --- running and measuring ---------------------------------------------------------------------
def search_base_config(epochs: int, threads: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The shipped VQA search config (its ``recipe:`` section) on generated data."""
    base = read_yaml(SEARCH_CONFIG)["recipe"]
    base["data"] = {**base["data"], "root": "synthetic", "limit": {}}
    base["search"] = {**base["search"], "epochs": epochs, "warmup_epochs": min(1, epochs - 1), "num_threads": threads}
    for key, value in (overrides or {}).items():
        node = base
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return base


def run_tune(recipe: Callable[..., Any], base: dict[str, Any], *, name: str, storage: str, search_space: dict[str, Any],
             cpus_per_trial: float, concurrency: int | None, scheduler: dict[str, Any] | None = None,
             metric: str = "val_metric", reuse_actors: bool | None = None) -> tuple[Any, float]:
    """``run_experiment`` once; returns (outcome, wall seconds)."""
    import ray.cloudpickle

    from mmsearch.orchestration.experiment import run_experiment
    from mmsearch.orchestration.settings import ResourceSettings, SchedulerSettings, TuneSettings
    from mmsearch.recipes.search.config import SearchConfig

    if recipe.__module__ != "__main__":  # workers cannot import bench/: ship the code by value
        ray.cloudpickle.register_pickle_by_value(sys.modules[recipe.__module__])
    settings = TuneSettings(
        experiment_name=name, metric=metric, mode="max", storage_path=storage, search_space=search_space,
        scheduler=SchedulerSettings(**(scheduler or {"name": "fifo"})),
        resources=ResourceSettings(cpus_per_trial=cpus_per_trial, reserve_cpus_for_data=0.0, max_concurrent_trials=concurrency),
        max_failures=0, checkpoints_to_keep=1, reuse_actors=reuse_actors,
    )
    start = time.perf_counter()
    outcome = run_experiment(recipe, SearchConfig, base, settings, epochs_key="search.epochs", verbose=0)
    return outcome, time.perf_counter() - start


def trial_histories(location: Any) -> list[list[dict[str, Any]]]:
    """Every trial's reports (epoch order), read back from storage like the report does."""
    from mmsearch.report.collect import collect_experiment

    return [t.history for t in collect_experiment(location).trials if t.history]


def breakdown(histories: list[list[dict[str, Any]]], wall: float, slots: int, cpus_per_trial: float) -> dict[str, Any]:
    """Where the slot-seconds (wall x concurrent trials) went; see the module docstring."""
    totals = dict.fromkeys(("training", "actor_start", "imports", "data_setup", "model_setup", "epoch_reporting"), 0.0)
    lifetimes, epochs = 0.0, 0
    processes: set[tuple[Any, float]] = set()  # (pid, process start) of the processes that ran a trial already
    for rows in sorted(histories, key=lambda h: h[0]["bench_entered_t"]):
        epoch_s = [float(r["epoch_s"]) for r in rows]
        reports = [float(r["bench_report_t"]) for r in rows]
        gaps = [reports[i] - reports[i - 1] - epoch_s[i] for i in range(1, len(rows))]
        report_cycle = statistics.mean(gaps) if gaps else 0.0
        first = rows[0]
        totals["training"] += sum(epoch_s)
        process = (first.get("bench_pid"), first["bench_process_t"])
        began = first["bench_process_t"] if process not in processes else first["bench_entered_t"]  # a reused process: no start
        processes.add(process)
        totals["actor_start"] += first["bench_entered_t"] - began
        totals["imports"] += first["bench_imports_s"]
        totals["data_setup"] += first["bench_data_s"]
        setup = reports[0] - first["bench_entered_t"] - first["bench_imports_s"] - first["bench_data_s"]
        totals["model_setup"] += setup - epoch_s[0] - report_cycle
        totals["epoch_reporting"] += sum(gaps) + report_cycle  # the first epoch's cycle counted here too
        lifetimes += reports[-1] + report_cycle - began
        epochs += len(rows)
    slot_seconds = wall * slots
    totals["slots_idle"] = slot_seconds - sum(totals.values())
    cores_used = slots * cpus_per_trial
    return {
        "efficiency": totals["training"] * cpus_per_trial / (wall * cores_used),
        "slot_seconds": slot_seconds,
        "share": {k: v / slot_seconds for k, v in totals.items()},
        "seconds": totals,
        "per_trial_s": {k: v / max(len(histories), 1) for k, v in totals.items()},
        "trial_epochs": epochs,
        "mean_trial_lifetime_s": lifetimes / max(len(histories), 1),
        "cpu_s": sum(rows[-1]["bench_cpu_s"] for rows in histories),
    }


def machine() -> dict[str, Any]:
    import ray
    import torch

    cpu = cpu_model()
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "ray": ray.__version__, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "load_avg_1m": os.getloadavg()[0]}


def start_ray(num_cpus: int | None) -> tuple[float, float]:
    """Start a local Ray for the benchmark; returns (seconds it took, cluster CPUs)."""
    import ray

    from mmsearch.orchestration.cluster import LOCAL_RAY_SYSTEM_CONFIG

    start = time.perf_counter()
    env = {k: os.environ[k] for k in ("RAY_AUTH_MODE", "OMP_WAIT_POLICY") if k in os.environ}
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20,
             runtime_env={"env_vars": env}, _system_config=dict(LOCAL_RAY_SYSTEM_CONFIG))  # as a job's local Ray
    return time.perf_counter() - start, float(ray.cluster_resources()["CPU"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-images", type=int, default=4000, help="generated training images (2 questions each)")
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per trial (default: its CPUs)")
    parser.add_argument("--concurrency", type=int, default=None, help="trials at once (default: all that fit)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs given to Ray (default: all)")
    parser.add_argument("--skip-noop", action="store_true", help="do not measure the no-op trials' fixed cost")
    parser.add_argument("--reuse-actors", choices=("on", "off"), default="on",
                        help="on (the jobs' default): CPU trials reuse finished trials' processes (tune.reuse_actors); off: a fresh worker per trial")
    parser.add_argument("--tiny", action="store_true", help="4 trials x 2 epochs on small data: checks that it works")
    parser.add_argument("--out", type=Path, default=RESULTS / "orchestration.json")
    args = parser.parse_args(argv)
    provenance = Provenance(__file__, argv)
    if args.tiny:
        args.trials, args.epochs, args.train_images, args.val_images = 4, 2, 80, 20
    threads = args.threads or max(1, int(args.cpus_per_trial))

    ray_start_s, cluster_cpus = start_ray(args.num_cpus)
    slots = args.concurrency or max(1, int(cluster_cpus // args.cpus_per_trial))
    slots = min(slots, args.trials)
    storage = tempfile.mkdtemp(prefix="bench-orchestration-")
    base = search_base_config(args.epochs, threads)
    space = {"seed": {"grid": list(range(args.trials))}}  # identical work per trial: balanced slots

    reuse = args.reuse_actors == "on"
    outcome, wall = run_tune(timed_search_recipe(args.train_images, args.val_images), base, name="searches",
                             storage=storage, search_space=space, cpus_per_trial=args.cpus_per_trial, concurrency=slots,
                             reuse_actors=reuse)
    histories = trial_histories(outcome.location)
    figures = breakdown(histories, wall, slots, args.cpus_per_trial)
    noop: dict[str, Any] | None = None
    if not args.skip_noop:
        probe, probe_wall = run_tune(noop_recipe, base, name="noop", storage=storage, search_space=space,
                                     cpus_per_trial=args.cpus_per_trial, concurrency=slots, reuse_actors=reuse)
        noop = {"wall_s": probe_wall, "trials": len(probe.summary.trials),
                "slot_s_per_trial": probe_wall * slots / max(len(probe.summary.trials), 1)}

    print(f"{len(histories)} search trials x {args.epochs} epochs, {slots} at once with {args.cpus_per_trial:g} CPU "
          f"and {threads} torch thread(s) each, on {cluster_cpus:g} CPUs (Ray started in {ray_start_s:.1f} s)")
    print(f"wall {wall:.1f} s; trials' own training {figures['seconds']['training']:.1f} s; "
          f"mean trial lifetime {figures['mean_trial_lifetime_s']:.1f} s")
    print(f"efficiency = training x CPUs / (wall x cores used) = {100 * figures['efficiency']:.1f}%")
    for key, share in figures["share"].items():
        print(f"  {key:<16} {100 * share:5.1f}% of slot time  ({figures['per_trial_s'][key]:6.2f} s per trial)")
    if noop:
        print(f"no-op trials (fixed cost of a trial): {noop['slot_s_per_trial']:.2f} slot-seconds per trial "
              f"({noop['trials']} trials in {noop['wall_s']:.1f} s)")
    result = {
        "benchmark": "orchestration",
        "command": provenance.command,
        "settings": {**{k: v for k, v in vars(args).items() if k != "out"}, "threads": threads, "slots": slots,
                     "config": str(SEARCH_CONFIG.relative_to(REPO)), "scheduler": "fifo",
                     "reuse_actors": args.reuse_actors != "off", "trial_processes": len({(r[0].get("bench_pid"), r[0]["bench_process_t"]) for r in histories})},
        "machine": machine(),
        "ray_start_s": ray_start_s,
        "wall_s": wall,
        **figures,
        "noop_trials": noop,
        "provenance": provenance.block(),
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
