"""Estimators scored against the architecture oracle: how rank-faithful is each, at what compute.

Reads ``arch_oracle_<task>.json`` (``bench/bench_arch_oracle.py``) and scores, without retraining
the oracle, every estimator of an architecture's standalone quality
(``mmsearch.evaluation.score_estimator``: Kendall's tau against the oracle's val means, top-1 and
top-5 regret on test):

* ``oneshot_<strategy>``: the current one-shot estimate. One search per ``--search-seeds`` seed
  (``run_search``, uniform initial architecture weights, the oracle's depth and width, the
  settings of ``configs/search/<task>.yaml`` otherwise), then its supernet scores every oracle
  architecture on val (``mmsearch.evaluation.oneshot``); scored per seed, and the mean over seeds.
  Strategies: MMnas's ``proxyless``, ``darts``, ``spos`` and, from the literature, ``fair``
  (FairNAS's strictly fair path sampling, ``mmsearch.nas.fair``: every candidate trains equally
  often, the bias SPOS's ranking suffers from; 4 paths per weight step);
* ``short_k<k>``: a short standalone training of ``k`` epochs (``--short-epochs``) of every oracle
  architecture with a training seed the oracle does not use (100), scored by its val metric after
  epoch ``k`` (the schedule is the oracle's, cut at ``k``, as ASHA's first rungs see it).
* ``fewshot_<strategy>`` (``--fewshot``): few-shot supernets (Zhao et al. 2021,
  ``mmsearch.evaluation.fewshot``): after the strategy's search, one sub-supernet per candidate of
  ``--fewshot-block`` (default ``dec.0``), each fine-tuned on the paths that keep that choice, scores
  the architectures that make it; its cost includes the search;
* ``combined_<strategy>_short_k<k>`` (and ``combined_fewshot_<strategy>_short_k<k>``): each one-shot
  or few-shot estimate and each short training by mean rank (``mmsearch.evaluation.oracle.rank_average``);

Compute: the CPU-seconds of the searches / short trainings (what an estimator costs), next to the
oracle's. Written: ``bench/results/estimators_<task>.json`` (``--quick``: in the work directory),
and a table printed per task. Cells are resumable (``mmsearch.evaluation.cells``).

    python bench/bench_estimators.py --workers 16                 # after bench_arch_oracle.py
    python bench/bench_estimators.py --quick                      # builds a tiny oracle first (the test)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Mapping

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(REPO), str(REPO / "bench")) if p not in sys.path]
import bench_arch_oracle as oracle_bench  # noqa: E402  (the oracle's data, model and training settings)

TASKS = oracle_bench.TASKS
SHORT_SEED = 100  # a training seed the oracle does not use
ITM_HEAD = {"num_candidates": 1, "use_dataset_negatives": False}
QUICK_SEARCH = {"model": {"hidden": 16, "head_dim": 8, "word_dim": 8, "relation_dim": 8, "alpha_init": "uniform"},
                "head": {"flat_mlp_size": 16},
                "search": {"epochs": 2, "warmup_epochs": 1, "batch_size": 8, "arch_batch_size": 4, "arch_every": 1,
                           "max_steps_per_epoch": 2, "num_threads": 1, "device": "cpu"},
                "eval": {"batch_size": 64}}


def search_settings(task: str, quick: bool) -> dict[str, Any]:
    if quick:
        return QUICK_SEARCH
    out = {"model": {"hidden": 64, "head_dim": 32, "alpha_init": "uniform"}, "search": {"num_threads": 1, "device": "cpu"}}
    return {**out, "head": ITM_HEAD} if task == "itm" else out


def search_config(oracle: Mapping[str, Any], task: str, strategy: str, seed: int, out: Path, space: str = "mmnas") -> Any:
    """The search of ``configs/search/<task>.yaml`` (``space="fusion"``: ``configs/search/fusion/<task>.yaml``)
    at the oracle's depth, width and data, uniform initial architecture weights."""
    from mmsearch.config import load_config, read_yaml
    from mmsearch.recipes.search.config import SearchConfig

    s = oracle["settings"]
    raw = read_yaml(REPO / "configs" / "search" / ("fusion/" if space == "fusion" else "") / f"{task}.yaml")
    raw = oracle_bench.deep_merge(raw.get("recipe", raw), search_settings(task, s["quick"]))
    # the supernet is trained on the oracle's loss: VQA's grounding term when the oracle has one
    grounding = s["train"].get("head", {}).get("grounding_weight")
    if grounding is not None:
        raw = oracle_bench.deep_merge(raw, {"head": {"grounding_weight": grounding}})
    raw = oracle_bench.deep_merge(raw, {"model": {"enc_depth": s["depths"][0], "dec_depth": s["depths"][1]},
                                        "data": {"root": "synthetic" if s["synthetic"] else s["data_root"]},
                                        "search": {"strategy": strategy}, "seed": seed, "output_dir": str(out)})
    return load_config(SearchConfig, raw)


def _oracle(settings: Mapping[str, Any], task: str) -> dict[str, Any]:
    return json.loads((Path(settings["oracle_dir"]) / f"arch_oracle_{task}.json").read_text())


def run_cell(cell: Any, settings: Mapping[str, Any], work_dir: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    p = cell.params
    oracle = _oracle(settings, p["task"])
    out = Path(work_dir) / "runs" / cell.name
    cpu = time.process_time()
    if p["kind"] == "fewshot":  # its own search (deterministic: the search cell's supernet), then K fine-tunings
        from mmsearch.evaluation.fewshot import fewshot_estimates
        from mmsearch.recipes.context import LocalContext
        from mmsearch.recipes.search.recipe import run_search

        cfg = search_config(oracle, p["task"], p["strategy"], p["seed"], out / "search")
        data = oracle_bench.task_data(oracle["settings"], cfg.data)
        run_search(cfg, LocalContext(out / "search"), data)
        search_cpu = time.process_time() - cpu
        specs = {a["label"]: a["spec"] for a in oracle["archs"] if "blocks" not in a["spec"]}
        found = fewshot_estimates(cfg, out / "search", data, specs, block=p["block"], epochs=p["epochs"], seed=p["seed"])
        return {**p, "scores": found["scores"], "fine_tuning": found["fine_tuning"], "cpu_s": time.process_time() - cpu,
                "search_cpu_s": search_cpu}
    if p["kind"] == "search":
        from mmsearch.evaluation.oneshot import supernet_estimates
        from mmsearch.recipes.context import LocalContext
        from mmsearch.recipes.search.recipe import run_search

        cfg = search_config(oracle, p["task"], p["strategy"], p["seed"], out)
        data = oracle_bench.task_data(oracle["settings"], cfg.data)
        run_search(cfg, LocalContext(out), data)
        search_cpu = time.process_time() - cpu
        # the MMnas supernet scores the architectures of its own space (not the fusion patterns)
        scores = supernet_estimates(cfg, out, data, {a["label"]: a["spec"] for a in oracle["archs"] if "blocks" not in a["spec"]})
        return {**p, "scores": scores, "cpu_s": search_cpu, "scoring_cpu_s": time.process_time() - cpu - search_cpu}
    from mmsearch.recipes.context import LocalContext
    from mmsearch.recipes.train_derived.recipe import train_derived

    arch = next(a for a in oracle["archs"] if a["label"] == p["label"])
    budget = oracle_bench.deep_merge(oracle["settings"]["train"], {"train": {"epochs": p["epochs"]}})  # the oracle's schedule, cut at k
    cfg = oracle_bench.train_config({**oracle["settings"], "train": {p["task"]: budget}}, p["task"], arch["spec"], SHORT_SEED, out)
    result = train_derived(cfg, LocalContext(out, keep_checkpoints=1), oracle_bench.task_data(oracle["settings"], cfg.data))
    return {**p, "score": float(result.metrics["val_metric"]), "cpu_s": time.process_time() - cpu}


def cell_scope(cell: Any, settings: Mapping[str, Any]) -> dict[str, Any]:
    """What decides one cell's result: its parameters and the oracle's settings (data, depths, budget)."""
    return {**cell.params, "oracle_settings": _oracle(settings, cell.params["task"])["settings"]}


def plan_cells(settings: Mapping[str, Any]) -> list[Any]:
    from mmsearch.evaluation.cells import Cell

    cells = []
    for task in settings["tasks"]:
        for strategy in settings["strategies"]:
            cells += [Cell(f"search_{task}_{strategy}_seed{seed}", {"kind": "search", "task": task, "strategy": strategy, "seed": seed})
                      for seed in settings["search_seeds"]]
        for strategy in settings.get("fewshot", []):
            block, epochs = settings["fewshot_block"], settings["fewshot_epochs"]
            cells += [Cell(f"fewshot_{task}_{strategy}_{block}_e{epochs}_seed{seed}",
                           {"kind": "fewshot", "task": task, "strategy": strategy, "seed": seed, "block": block, "epochs": epochs})
                      for seed in settings["search_seeds"]]
        for label in [a["label"] for a in _oracle(settings, task)["archs"]]:
            cells += [Cell(f"short_{task}_{label}_k{k}", {"kind": "short", "task": task, "label": label, "epochs": k})
                      for k in settings["short_epochs"]]
    return cells


def estimators(settings: Mapping[str, Any], task: str, results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    from mmsearch.evaluation import load_oracle, score_estimator
    from mmsearch.evaluation.oracle import rank_average

    _, archs = load_oracle(Path(settings["oracle_dir"]) / f"arch_oracle_{task}.json")
    labels = [a.label for a in archs]
    out: dict[str, Any] = {}
    supernet_cells = [(f"oneshot_{strategy}", f"search_{task}_{strategy}") for strategy in settings["strategies"]]
    supernet_cells += [(f"fewshot_{strategy}", f"fewshot_{task}_{strategy}_{settings['fewshot_block']}_e{settings['fewshot_epochs']}")
                       for strategy in settings.get("fewshot", [])]
    for name, prefix in supernet_cells:
        runs = [results[f"{prefix}_seed{seed}"] for seed in settings["search_seeds"]]
        per_seed = [score_estimator(archs, r["scores"], k=settings["k"]) for r in runs]
        mean = {lab: statistics.fmean(r["scores"][lab] for r in runs) for lab in labels if lab in runs[0]["scores"]}
        out[name] = {"score": score_estimator(archs, mean, k=settings["k"]), "per_seed": per_seed,
                     "kendall_tau_per_seed": [s["kendall_tau"] for s in per_seed],
                     "cpu_s": sum(r["cpu_s"] for r in runs), "estimates": mean}
    for k in settings["short_epochs"]:
        cells = {lab: results[f"short_{task}_{lab}_k{k}"] for lab in labels}
        estimates = {lab: c["score"] for lab, c in cells.items()}
        out[f"short_k{k}"] = {"score": score_estimator(archs, estimates, k=settings["k"]),
                              "cpu_s": sum(c["cpu_s"] for c in cells.values()), "estimates": estimates}
    # Each one-shot estimate combined with each short training: mean rank of the two, over the
    # architectures both score (the supernet's space), at the cost of both.
    for k in settings["short_epochs"] if settings["short_epochs"] else []:
        short = out[f"short_k{k}"]
        for name, _ in supernet_cells:
            oneshot = out[name]
            combined = rank_average(oneshot["estimates"], short["estimates"])
            out[f"combined_{name.removeprefix('oneshot_')}_short_k{k}"] = {
                "score": score_estimator(archs, combined, k=settings["k"]),
                "cpu_s": oneshot["cpu_s"] + sum(results[f"short_{task}_{lab}_k{k}"]["cpu_s"] for lab in combined),
                "estimates": combined}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="build a tiny synthetic oracle in the work dir and score against it")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--oracle-dir", default=None, help="where arch_oracle_<task>.json are (default bench/results)")
    parser.add_argument("--strategies", nargs="*", default=["proxyless", "darts", "spos", "fair"],
                        help="one-shot strategies scored (none: the short trainings only)")
    parser.add_argument("--fewshot", nargs="*", default=[], metavar="STRATEGY",
                        help="few-shot supernets (mmsearch.evaluation.fewshot) after a search with each strategy")
    parser.add_argument("--fewshot-block", default="dec.0", help="the block whose choice splits the space (default dec.0)")
    parser.add_argument("--fewshot-epochs", type=int, default=1, help="fine-tuning passes over the weights part per sub-supernet")
    parser.add_argument("--search-seeds", type=int, default=3)
    parser.add_argument("--short-epochs", type=int, nargs="+", default=[1, 2], help="k of the short-training proxy")
    parser.add_argument("--k", type=int, default=5, help="shortlist size of the top-k regret")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work-dir", default=None, help="default runs/bench_estimators[_quick]")
    parser.add_argument("--out-dir", default=None, help="default bench/results (--quick: the work dir)")
    args = parser.parse_args(argv)
    from mmsearch.evaluation.fewshot import parse_block

    try:  # before any work (the quick mode builds an oracle first)
        parse_block(args.fewshot_block)
    except ValueError as err:
        parser.error(str(err))

    from mmsearch.evaluation.cells import run_cells
    from mmsearch.io import atomic_write_json

    from mmsearch.machine import Provenance

    provenance = Provenance(__file__, argv)
    work = Path(args.work_dir or REPO / "runs" / ("bench_estimators_quick" if args.quick else "bench_estimators"))
    oracle_dir = Path(args.oracle_dir) if args.oracle_dir else (work / "oracle" if args.quick else oracle_bench.RESULTS)
    if args.quick and not all((oracle_dir / f"arch_oracle_{t}.json").is_file() for t in args.tasks):
        oracle_bench.main(["--quick", "--tasks", *args.tasks, "--archs", "3", "--seeds", "2", "--workers", str(args.workers),
                           "--work-dir", str(oracle_dir)])
    settings = {"tasks": list(args.tasks), "oracle_dir": str(oracle_dir), "strategies": list(args.strategies),
                "fewshot": list(args.fewshot), "fewshot_block": args.fewshot_block, "fewshot_epochs": args.fewshot_epochs,
                "search_seeds": list(range(args.search_seeds)), "short_epochs": list(args.short_epochs), "k": args.k}
    results = run_cells(plan_cells(settings), run_cell, settings, work, args.workers, log=lambda line: print(line, flush=True),
                        scope=cell_scope)
    out_dir = Path(args.out_dir) if args.out_dir else (work if args.quick else oracle_bench.RESULTS)
    for task in args.tasks:
        oracle = _oracle(settings, task)
        table = estimators(settings, task, results)
        atomic_write_json(out_dir / f"estimators_{task}.json", {
            "task": task, "metric": oracle["metric"], "oracle": str(oracle_dir / f"arch_oracle_{task}.json"),
            "oracle_train_cpu_s": oracle["train_cpu_s"], "noise_std": next(iter(table.values()))["score"]["noise_std"],
            "settings": settings, "estimators": table, "provenance": provenance.block()})
        print(f"\n{task} ({oracle['metric']}; oracle {len(oracle['archs'])} archs, {oracle['train_cpu_s'] / 3600:.2f} CPU-h)")
        print(f"| estimator | Kendall tau | top-1 regret | top-{args.k} regret | CPU-h |\n|---|---:|---:|---:|---:|")
        for name, e in table.items():
            s = e["score"]
            print(f"| {name} | {s['kendall_tau']:.2f} | {s['top1_regret']:+.2f} | {s['topk_regret']:+.2f} | {e['cpu_s'] / 3600:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
