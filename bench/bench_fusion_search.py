"""The fusion space searched, its pick retrained, against the architecture oracle (issue 9's goal).

Does a search over *where and how* the modalities meet (``search_space: fusion``,
``configs/search/fusion/<task>.yaml``) find an architecture better than the hand-designed ones?
Per task and strategy, ``--search-seeds`` searches (the oracle's depth and width, uniform initial
architecture weights as in ``bench/bench_estimators.py``, the fusion config's settings otherwise);
each search's pick (its ``best_arch``: the derived architecture of its best validation epoch after
warm-up) is retrained standalone exactly as the oracle trains its sample (``bench_arch_oracle``'s
config, budget and training seeds), then compared on test with the oracle's MCAN, its best
hand-designed fusion pattern (chosen on val) and its best architecture overall (chosen on val). The
retraining noise is the oracle's mean seed-to-seed test std; a pick "beats" an anchor when its test
mean is above the anchor's by more than that std. The pipeline's pick over the search seeds is the
one with the best retrained val mean (a shortlist of the searches' picks).

Written: ``bench/results/fusion_search_<task>.json`` (``--quick``: in the work directory); cells
resumable (``mmsearch.evaluation.cells``); the retraining cells record the spec they retrain, so a
search that changed retrains its pick again.

    python bench/bench_fusion_search.py --tasks vg itm --strategies proxyless darts --search-seeds 2 --workers 2
    python bench/bench_fusion_search.py --quick      # tiny synthetic oracle and searches (the test)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Mapping

sys.path[:0] = [p for p in (str(Path(__file__).resolve().parents[1] / "bench"),) if p not in sys.path]
import bench_estimators as estimators_bench  # noqa: E402  (the oracle's files and the estimators' search settings)
from bench_estimators import _oracle, oracle_bench  # noqa: E402

TASKS = oracle_bench.TASKS


def run_cell(cell: Any, settings: Mapping[str, Any], work_dir: str) -> dict[str, Any]:
    import torch

    from mmsearch.evaluation.sample import arch_line
    from mmsearch.recipes.context import LocalContext

    torch.set_num_threads(1)
    p = cell.params
    oracle = _oracle(settings, p["task"])
    if p["kind"] == "search":
        from mmsearch.recipes.search.recipe import run_search

        out = Path(work_dir) / "runs" / cell.name
        cfg = estimators_bench.search_config(oracle, p["task"], p["strategy"], p["seed"], out, space="fusion")
        cpu = time.process_time()
        result = run_search(cfg, LocalContext(out), oracle_bench.task_data(oracle["settings"], cfg.data))
        spec = (result.best_spec or result.final_spec).to_dict()
        return {**p, "spec": spec, "arch": arch_line(spec), "cpu_s": time.process_time() - cpu}
    # a retraining: the oracle's own cell function on the search's pick
    train_settings = {**oracle["settings"], "train": {p["task"]: oracle["settings"]["train"]}, "archs": [[p["label"], p["spec"]]]}
    return oracle_bench.run_train_cell(cell, train_settings, work_dir)


def cell_scope(cell: Any, settings: Mapping[str, Any]) -> dict[str, Any]:
    """A cell's result depends on its parameters (a retraining's include the spec) and the oracle's settings."""
    return {**cell.params, "oracle_settings": _oracle(settings, cell.params["task"])["settings"]}


def search_cells(settings: Mapping[str, Any]) -> list[Any]:
    from mmsearch.evaluation.cells import Cell

    return [Cell(f"search_{task}_{strategy}_seed{seed}", {"kind": "search", "task": task, "strategy": strategy, "seed": seed})
            for task in settings["tasks"] for strategy in settings["strategies"] for seed in settings["search_seeds"]]


def retrain_cells(settings: Mapping[str, Any], searches: Mapping[str, Mapping[str, Any]]) -> list[Any]:
    """Each search's pick, trained with every one of the oracle's training seeds."""
    from mmsearch.evaluation.cells import Cell

    cells = []
    for name, search in searches.items():
        label = name.removeprefix("search_")
        seeds = _oracle(settings, search["task"])["settings"]["seeds"]
        cells += [Cell(f"retrain_{label}_train{seed}", {"kind": "retrain", "task": search["task"], "label": label,
                                                        "seed": seed, "spec": search["spec"]}) for seed in seeds]
    return cells


def _anchor(arch: Mapping[str, Any]) -> dict[str, Any]:
    return {"label": arch["label"], "arch": arch["arch"], "val": arch["val"], "test": arch["test"]}


def compare(settings: Mapping[str, Any], task: str, searches: Mapping[str, Mapping[str, Any]],
            retrained: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The picks against the oracle's anchors (see the module docstring)."""
    from mmsearch.evaluation import mean_std

    oracle = _oracle(settings, task)
    metric, archs = oracle["metric"], oracle["archs"]
    noise = statistics.fmean(a["test"]["std"] for a in archs)
    by_val = lambda pool: max(pool, key=lambda a: a["val"]["mean"])  # noqa: E731
    anchors = {"mcan": _anchor(next(a for a in archs if a["label"] == "mcan")),
               "best_pattern": _anchor(by_val([a for a in archs if a["label"].startswith("fusion_")])),
               "oracle_best": _anchor(by_val(archs))}
    picks = []
    for strategy in settings["strategies"]:
        for seed in settings["search_seeds"]:
            label = f"{task}_{strategy}_seed{seed}"
            cells = [retrained[f"retrain_{label}_train{s}"] for s in oracle["settings"]["seeds"]]
            val, test = mean_std([c["val"][metric] for c in cells]), mean_std([c["test"][metric] for c in cells])
            picks.append({"strategy": strategy, "search_seed": seed, "arch": searches[f"search_{label}"]["arch"],
                          "spec": searches[f"search_{label}"]["spec"], "val": val, "test": test,
                          "search_cpu_s": searches[f"search_{label}"]["cpu_s"],
                          "retrain_cpu_s": sum(c["train_cpu_s"] for c in cells),
                          "vs": {name: {"test_diff": test["mean"] - a["test"]["mean"],
                                        "in_noise_stds": (test["mean"] - a["test"]["mean"]) / noise if noise > 0 else None,
                                        "beats": test["mean"] - a["test"]["mean"] > noise}
                                 for name, a in anchors.items()}})
    pipeline = {strategy: max((p for p in picks if p["strategy"] == strategy), key=lambda p: p["val"]["mean"])
                for strategy in settings["strategies"]}
    return {"task": task, "metric": metric, "noise_std": noise, "anchors": anchors, "picks": picks,
            "pipeline_pick": {s: {"search_seed": p["search_seed"], "arch": p["arch"], "test": p["test"], "vs": p["vs"]}
                              for s, p in pipeline.items()},
            "oracle_train_cpu_s": oracle["train_cpu_s"]}


def print_table(table: Mapping[str, Any]) -> None:
    a = table["anchors"]
    print(f"\n{table['task']} ({table['metric']}, test; noise std {table['noise_std']:.2f}): MCAN {a['mcan']['test']['mean']:.2f}, "
          f"best pattern on val {a['best_pattern']['label']} {a['best_pattern']['test']['mean']:.2f}, "
          f"oracle's best on val {a['oracle_best']['label']} {a['oracle_best']['test']['mean']:.2f}")
    print("| strategy | seed | pick | val | test | vs MCAN | vs best pattern | vs oracle best |\n|---|---:|---|---:|---:|---:|---:|---:|")
    for p in table["picks"]:
        vs = " | ".join(f"{p['vs'][n]['test_diff']:+.2f}" for n in ("mcan", "best_pattern", "oracle_best"))
        print(f"| {p['strategy']} | {p['search_seed']} | {p['arch']} | {p['val']['mean']:.2f} +- {p['val']['std']:.2f} | "
              f"{p['test']['mean']:.2f} +- {p['test']['std']:.2f} | {vs} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="build a tiny synthetic oracle in the work dir and search against it")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=["vg", "itm"])
    parser.add_argument("--oracle-dir", default=None, help="where arch_oracle_<task>.json are (default bench/results)")
    parser.add_argument("--strategies", nargs="+", default=["proxyless", "darts"], choices=["proxyless", "darts", "spos", "fair"])
    parser.add_argument("--search-seeds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work-dir", default=None, help="default runs/bench_fusion_search[_quick]")
    parser.add_argument("--out-dir", default=None, help="default bench/results (--quick: the work dir)")
    args = parser.parse_args(argv)

    from mmsearch.evaluation.cells import run_cells
    from mmsearch.io import atomic_write_json
    from mmsearch.machine import Provenance

    provenance = Provenance(__file__, argv)
    work = Path(args.work_dir or estimators_bench.REPO / "runs" / ("bench_fusion_search_quick" if args.quick else "bench_fusion_search"))
    oracle_dir = Path(args.oracle_dir) if args.oracle_dir else (work / "oracle" if args.quick else oracle_bench.RESULTS)
    if args.quick and not all((oracle_dir / f"arch_oracle_{t}.json").is_file() for t in args.tasks):
        oracle_bench.main(["--quick", "--tasks", *args.tasks, "--archs", "3", "--seeds", "2", "--workers", str(args.workers),
                           "--work-dir", str(oracle_dir)])
    settings = {"tasks": list(args.tasks), "oracle_dir": str(oracle_dir), "strategies": list(args.strategies),
                "search_seeds": list(range(args.search_seeds))}
    log = lambda line: print(line, flush=True)  # noqa: E731
    searches = run_cells(search_cells(settings), run_cell, settings, work, args.workers, log=log, scope=cell_scope)
    retrained = run_cells(retrain_cells(settings, searches), run_cell, settings, work, args.workers, log=log, scope=cell_scope)
    out_dir = Path(args.out_dir) if args.out_dir else (work if args.quick else oracle_bench.RESULTS)
    for task in args.tasks:
        table = compare(settings, task, {k: v for k, v in searches.items() if v["task"] == task}, retrained)
        atomic_write_json(out_dir / f"fusion_search_{task}.json", {
            **table, "oracle": str(oracle_dir / f"arch_oracle_{task}.json"), "settings": settings,
            "provenance": provenance.block()})
        print_table(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
