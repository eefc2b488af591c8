"""Benchmark: search quality on the embedded scenes with the search's data streamed (issue 11).

Runs the shipped VQA search (``configs/search/vqa.yaml``, as ``python -m mmsearch.recipes.search``
runs it: one process, one torch thread) on the embedded data set (``ensure_dataset()``) for each
case and seed, ``--workers`` processes at a time:

* ``memory``: ``data.regions: memory`` (the default), every sample shuffled alone;
* ``stream``: ``data.regions: stream``, the same order: its batches are the in-memory ones, so the
  search must come out identical (every per-epoch figure but the timings and memory);
* ``block16``: in memory with ``data.shuffle_block: 16`` (runs of 16 consecutive samples shuffled
  whole: what lets token states stream through Ray Data with fewer row groups per batch): another
  order, so another search; its val metric against ``memory``'s, paired by seed.

Records per run the best and final val metric (the derived architecture's VQA accuracy on val, %),
the derived architecture and the seconds; writes ``bench/results/streamed_search.json`` (with
``mmsearch.machine.Provenance``).

    python bench/bench_streamed_search.py                 # 6 seeds x 3 cases, about 7 min on 2 cores
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "streamed_search.json"
CASES = {"memory": [], "stream": ["data.regions=stream"], "block16": ["data.shuffle_block=16"]}
TIMING_KEYS = ("_s", "peak_rss_mib", "samples_per_s")  # per-epoch figures that are not the search's own


def search_figures(epochs: list[dict]) -> list[dict]:
    """The per-epoch figures of the search itself (no timings, no memory), NaN written as null."""
    def plain(value):
        return None if isinstance(value, float) and math.isnan(value) else value
    return [{k: plain(v) for k, v in e.items() if not k.endswith(TIMING_KEYS)} for e in epochs]


def run_one(root: str, case: str, seed: int, out_dir: Path, overrides: list[str]) -> dict:
    run_dir = out_dir / f"{case}_seed{seed}"
    command = [sys.executable, "-m", "mmsearch.recipes.search", str(REPO / "configs" / "search" / "vqa.yaml"),
               f"data.root={root}", f"seed={seed}", f"output_dir={run_dir}", *overrides, *CASES[case]]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{case} seed {seed} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads((run_dir / "search_result.json").read_text())
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {"case": case, "seed": seed, "seconds": round(seconds, 1), "best_val_metric": result["best_val_metric"],
            "final_val_metric": result["final_val_metric"], "best_epoch": result["best_epoch"],
            "final_arch": result["final_arch"], "epochs": search_figures(epochs)}


def summarise(runs: list[dict], seeds: list[int]) -> dict:
    by = {(r["case"], r["seed"]): r for r in runs}
    summary: dict = {}
    for case in CASES:
        values = [by[case, s]["final_val_metric"] for s in seeds]
        summary[case] = {"final_val_metric_mean": round(statistics.mean(values), 3),
                         "final_val_metric_std": round(statistics.stdev(values), 3) if len(values) > 1 else None}
    summary["stream_identical_to_memory"] = all(by["stream", s]["epochs"] == by["memory", s]["epochs"] for s in seeds)
    diffs = [by["block16", s]["final_val_metric"] - by["memory", s]["final_val_metric"] for s in seeds]
    summary["block16_minus_memory"] = {
        "mean": round(statistics.mean(diffs), 3),
        "standard_error": round(statistics.stdev(diffs) / math.sqrt(len(diffs)), 3) if len(diffs) > 1 else None,
        "per_seed": [round(d, 3) for d in diffs]}
    return summary


def main(argv: list[str] | None = None) -> int:
    given = argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=6, help="search seeds per case (0 .. seeds-1)")
    parser.add_argument("--workers", type=int, default=2, help="searches at once (one torch thread each)")
    parser.add_argument("--data-root", default=None, help="a precomputed data set (default: ensure_dataset())")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of the search config for every run (e.g. search.epochs=2)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.workers < 1:
        parser.error(f"--seeds and --workers must be >= 1, got {args.seeds} and {args.workers}")
    if args.data_root and "://" not in args.data_root and not Path(args.data_root, "dataset.json").is_file():
        parser.error(f"--data-root {args.data_root}: no precomputed data set there (no dataset.json)")
    from mmsearch.config import ConfigError, load_config, read_yaml
    from mmsearch.recipes.search.config import SearchConfig

    try:  # every case's overrides, checked here before any search starts
        raw = read_yaml(REPO / "configs" / "search" / "vqa.yaml")["recipe"]
        for case in CASES.values():
            load_config(SearchConfig, raw, [*args.set, *case])
    except ConfigError as err:
        parser.error(f"--set: {err}")
    from mmsearch.io import atomic_write_json
    from mmsearch.machine import Provenance

    provenance = Provenance(__file__, given)
    if args.data_root:
        root = args.data_root
    else:
        from mmsearch.orchestration.precompute import ensure_dataset

        root = ensure_dataset(backend="local")
    seeds = list(range(args.seeds))
    jobs = [(case, seed) for seed in seeds for case in CASES]
    with tempfile.TemporaryDirectory(prefix="mmsearch_bench_streamed_search_") as work, ThreadPoolExecutor(args.workers) as pool:
        runs = list(pool.map(lambda job: run_one(root, job[0], job[1], Path(work), args.set), jobs))
    summary = summarise(runs, seeds)
    results = {"benchmark": "streamed_search", "data_root": root, "config": "configs/search/vqa.yaml", "overrides": args.set, "seeds": seeds,
               "cases": {case: CASES[case] for case in CASES}, "summary": summary,
               "runs": [{k: v for k, v in r.items() if k != "epochs"} for r in runs], "provenance": provenance.block()}
    atomic_write_json(args.out, results)
    for case in CASES:
        print(f"{case:8s} final val acc {summary[case]['final_val_metric_mean']:.2f} +- {summary[case]['final_val_metric_std']}")
    print(f"stream identical to memory (every per-epoch search figure, every seed): {summary['stream_identical_to_memory']}")
    d = summary["block16_minus_memory"]
    print(f"block16 - memory: {d['mean']:+.2f} (standard error {d['standard_error']}; per seed {d['per_seed']})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
