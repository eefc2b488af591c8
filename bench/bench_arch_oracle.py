"""Architecture oracle: a fixed sample of the search space, each trained standalone with 3 seeds.

Ground truth for the search (issue 10). Per task (VQA, ITM, VG) on the default embedded data set
(``ensure_dataset()``), at the search's depth and width (4 + 6 blocks, H=64, the pools of
``configs/search/<task>.yaml``): ``--archs`` architectures (``mmsearch.evaluation.oracle_sample``:
MCAN, MMnas's MCAN-like prior, then distinct uniform draws seeded by ``--sample-seed``) plus the
survey's six fusion patterns (``fusion_<pattern>``, the shipped fusion specs; ``--no-fusion``), each
trained from scratch by ``train_derived`` at one fixed budget (the retraining budget of
``bench/bench_search_quality.py``: VQA and VG 8 epochs, x0.2 at 6 and 8; ITM 5 epochs, x0.2 at 4)
with ``--seeds`` training seeds; validation after every epoch (the history is kept: it is the
"k epochs" proxy's ground truth too), test once after the last epoch.

Written per task: ``bench/results/arch_oracle_<task>.json`` (format: ``mmsearch.evaluation.oracle``):
per architecture its spec, val and test mean +- std over the seeds (the task's primary metric;
every test metric's mean too), parameters, training CPU-seconds; plus how well the oracle
separates architectures (best and worst val mean against the mean seed-to-seed std).

Every (task, architecture, seed) is a cell with a result file under ``<work-dir>/cells``; a rerun
skips finished cells. Cells run in a pool of ``--workers`` processes with one torch thread each.

    python bench/bench_arch_oracle.py --workers 16            # full run (hours of CPU; see bench/README.md)
    python bench/bench_arch_oracle.py --quick                 # tiny synthetic data, seconds (the test)
    python bench/bench_arch_oracle.py --tasks vqa --archs 34 --seeds 3
    python bench/bench_arch_oracle.py --tasks itm --partial   # the oracle of the seeds finished so far (>= 2)
"""
from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Mapping

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"
if str(REPO / "bench") not in sys.path:
    sys.path.insert(0, str(REPO / "bench"))
from search_quality.settings import TRAIN as SEARCH_QUALITY_TRAIN  # noqa: E402

TASKS = ("vqa", "itm", "vg")
DEPTHS = (4, 6)  # the shipped CPU search configs' depth: 2^4 * 4^6 = 65,536 architectures


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else copy.deepcopy(value)
    return out


# The retraining budget of bench/bench_search_quality.py (so that its figures and the oracle's
# can be read side by side; ITM with in-batch negatives only, as there), validated every epoch:
# the oracle keeps each seed's validation history.
# VQA and VG are validated and tested on their whole val and test splits (scenes: VQA 900 and 1,800
# questions, VG 450 and 900 referring expressions) rather than the retraining's 800-row caps: the
# oracle's job is to resolve differences between architectures, and at 44 % accuracy one seed's
# test figure on 800 questions has a sampling std of 1.8 points (1.2 on 1,800). ITM keeps its
# caps (100 val, 250 test pairs): its retrieval metric scores every caption against every image.
# VQA is trained with the grounding term (``head.grounding_weight``): with answers only, 4,000
# questions teach question priors and no architecture separates from another (bench/README.md,
# the VQA pilots); pulling the head's region attention onto the referred objects is the task change
# that lets the architectures' handling of the regions show. The weight: bench/README.md, "A
# grounding signal for VQA" (bench/results/vqa_grounding*.json).
VQA_GROUNDING_WEIGHT = 3.0
TRAIN = {task: deep_merge(settings, {"eval": {"every_epochs": 1}}) for task, settings in SEARCH_QUALITY_TRAIN.items()}
for _task in ("vqa", "vg"):
    TRAIN[_task]["data"]["limit"] = {"train": TRAIN[_task]["data"]["limit"]["train"]}
TRAIN["vqa"] = deep_merge(TRAIN["vqa"], {"head": {"grounding_weight": VQA_GROUNDING_WEIGHT}})
QUICK_DEPTHS = (2, 3)
QUICK_TRAIN = {"model": {"hidden": 16, "head_dim": 8, "word_dim": 8, "relation_dim": 8},
               "head": {"flat_mlp_size": 16}, "optim": {"lr_decay_epochs": []},
               "train": {"epochs": 2, "batch_size": 8, "max_steps_per_epoch": 2, "num_threads": 1, "device": "cpu"},
               "eval": {"batch_size": 64, "every_epochs": 1, "predictions": False}}
QUICK_DATA = {"train_images": 20, "val_images": 6, "test_images": 6, "region_dim": 8, "text_state_dim": 8}


def benchmark_settings(args: argparse.Namespace, data_root: str) -> dict[str, Any]:
    """Everything that decides the results (stored with them; a work directory holds one setting)."""
    from mmsearch.evaluation.sample import fusion_anchors, oracle_sample

    quick = bool(args.quick)
    depths = QUICK_DEPTHS if quick else DEPTHS
    sample = oracle_sample(*depths, args.archs, seed=args.sample_seed) + (fusion_anchors() if args.fusion else [])
    return {
        "quick": quick,
        "data_root": data_root,
        "synthetic": QUICK_DATA if quick else None,
        "tasks": list(args.tasks),
        "depths": list(depths),
        "sample_seed": args.sample_seed,
        "archs": [[label, spec.to_dict()] for label, spec in sample],
        "seeds": list(range(args.seeds)),
        "train": {t: quick_train(t) if quick else copy.deepcopy(TRAIN[t]) for t in args.tasks},
    }


def quick_train(task: str) -> dict[str, Any]:
    """The quick budget, with the full run's VQA loss (so that the test covers the grounding term)."""
    return deep_merge(QUICK_TRAIN, {"head": {"grounding_weight": VQA_GROUNDING_WEIGHT}}) if task == "vqa" else copy.deepcopy(QUICK_TRAIN)


def train_config(settings: Mapping[str, Any], task: str, arch: Mapping[str, Any], seed: int, out_dir: Path) -> Any:
    """The standalone training's config: ``configs/train/<task>.yaml`` with the benchmark's budget."""
    from mmsearch.config import load_config, read_yaml
    from mmsearch.recipes.train_derived.config import TrainDerivedConfig

    raw = read_yaml(REPO / "configs" / "train" / f"{task}.yaml")
    raw = deep_merge(raw.get("recipe", raw), settings["train"][task])
    raw["data"]["limit"] = dict(settings["train"][task].get("data", {}).get("limit", raw["data"].get("limit", {})))  # the benchmark's caps, not the YAML's
    raw = deep_merge(raw, {"data": {"root": "synthetic" if settings["synthetic"] else settings["data_root"]},
                           "seed": seed, "output_dir": str(out_dir)})
    raw["arch"] = dict(arch)
    return load_config(TrainDerivedConfig, raw)


def task_data(settings: Mapping[str, Any], data_cfg: Any) -> Any:
    if settings["synthetic"] is not None:
        from mmsearch.data.synthetic import SyntheticTaskData

        return SyntheticTaskData.from_config(data_cfg, **settings["synthetic"])
    from mmsearch.data.tasks import open_task_data

    return open_task_data(data_cfg)


@functools.cache
def _code_of_this_process(git_state: Any) -> dict[str, Any]:
    """The checkout's commit when this process first trained a cell: a pool worker imports the
    code then and keeps it, whatever is committed later during the run."""
    return git_state(REPO)


def run_train_cell(cell: Any, settings: Mapping[str, Any], work_dir: str) -> dict[str, Any]:
    """Train one (task, architecture, seed) from scratch; its val history, final val and test metrics."""
    import torch

    from mmsearch.machine import git_state
    from mmsearch.recipes.context import LocalContext
    from mmsearch.recipes.train_derived.recipe import train_derived
    from mmsearch.recipes.train_derived.engine import build_model

    torch.set_num_threads(1)
    code = _code_of_this_process(git_state)  # a run of hours may span commits: each cell says which code trained it
    task, label, seed = cell.params["task"], cell.params["label"], cell.params["seed"]
    out = Path(work_dir) / "runs" / cell.name
    cfg = train_config(settings, task, dict(settings["archs"])[label], seed, out)
    data = task_data(settings, cfg.data)
    wall, cpu = time.perf_counter(), time.process_time()
    result = train_derived(cfg, LocalContext(out, keep_checkpoints=1), data)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    final = result.metrics
    return {
        "task": task, "label": label, "seed": seed, "metric": result.config.primary_metric,
        "val": {k[4:]: v for k, v in final.items() if k.startswith("val_") and k != "val_metric"},
        "test": {k[5:]: v for k, v in final.items() if k.startswith("test_")},
        "val_history": [m.get("val_metric") for m in result.history],
        "parameters": sum(p.numel() for p in build_model(result.config, data.info).parameters()),
        "train_cpu_s": cpu, "wall_s": wall, "resumed": any(m.get("resumed_from_epoch") for m in result.history),
        "commit": code["commit"], "dirty": code["dirty"],
    }


def cell_scope(cell: Any, settings: Mapping[str, Any]) -> dict[str, Any]:
    """What decides one cell's result: the shared settings, its task's budget, its architecture."""
    task = cell.params["task"]
    return {**{k: v for k, v in settings.items() if k not in ("tasks", "train", "archs")}, **cell.params,
            "train": settings["train"][task], "arch": dict(settings["archs"])[cell.params["label"]]}


def plan_cells(settings: Mapping[str, Any]) -> list[Any]:
    from mmsearch.evaluation.cells import Cell

    return [Cell(f"{task}_{label}_seed{seed}", {"task": task, "label": label, "seed": seed})
            for seed in settings["seeds"] for task in settings["tasks"] for label, _ in settings["archs"]]


def oracle_file(settings: Mapping[str, Any], task: str, results: Mapping[str, Mapping[str, Any]], run: Mapping[str, Any]) -> dict[str, Any]:
    """The oracle of one task from its cells (see the module docstring)."""
    import statistics

    from mmsearch.evaluation import mean_std
    from mmsearch.evaluation.sample import arch_line

    archs, metric = [], None
    for label, spec in settings["archs"]:
        cells = [results[f"{task}_{label}_seed{seed}"] for seed in settings["seeds"]]
        metric = cells[0]["metric"]
        keys = sorted(set.intersection(*(set(c["test"]) for c in cells)))
        archs.append({
            "label": label, "arch": arch_line(spec), "spec": spec, "seeds": list(settings["seeds"]),
            "val": mean_std([c["val"][metric] for c in cells]),
            "test": mean_std([c["test"][metric] for c in cells]),
            "test_all": {k: statistics.fmean(c["test"][k] for c in cells) for k in keys},
            "val_history": [c["val_history"] for c in cells],
            "parameters": cells[0]["parameters"],
            "train_cpu_s": {"mean": statistics.fmean(c["train_cpu_s"] for c in cells), "total": sum(c["train_cpu_s"] for c in cells)},
        })
    noise = statistics.fmean(a["val"]["std"] for a in archs)
    best, worst = max(archs, key=lambda a: a["val"]["mean"]), min(archs, key=lambda a: a["val"]["mean"])
    mcan = next(a for a in archs if a["label"] == "mcan")
    return {
        "task": task, "metric": metric, "run": dict(run),
        "settings": {k: v for k, v in settings.items() if k not in ("archs", "train", "tasks")} | {"train": settings["train"][task]},
        "separation": {
            "val_noise_std": noise, "best": best["label"], "best_val": best["val"]["mean"], "worst_val": worst["val"]["mean"],
            "best_minus_mcan_val": best["val"]["mean"] - mcan["val"]["mean"],
            "range_in_noise_stds": (best["val"]["mean"] - worst["val"]["mean"]) / noise if noise > 0 else None,
            "archs_above_mcan_by_2_std": sum(a["val"]["mean"] > mcan["val"]["mean"] + 2 * max(noise, 1e-12) for a in archs),
        },
        "train_cpu_s": sum(a["train_cpu_s"]["total"] for a in archs),
        # the code each cell was trained by (a resumed run spans commits)
        "cell_commits": sorted({str(results[f"{task}_{label}_seed{seed}"].get("commit")) for label, _ in settings["archs"]
                                for seed in settings["seeds"]}),
        "archs": archs,
    }


def print_status(settings: Mapping[str, Any], work: Path) -> None:
    """A run in progress, from its finished cells: per task, every architecture's val and test
    means over the seeds done so far, best val first, and the seed-to-seed std where 2+ seeds are in."""
    import statistics

    from mmsearch.evaluation.cells import finished_cells

    cells = plan_cells(settings)
    results = finished_cells(cells, settings, work, scope=cell_scope)
    print(f"{len(results)} of {len(cells)} cells done in {work}")
    for task in settings["tasks"]:
        rows = []
        for label, spec in settings["archs"]:
            done = [results[n] for seed in settings["seeds"] if (n := f"{task}_{label}_seed{seed}") in results]
            if done:
                metric = done[0]["metric"]
                vals, tests = [c["val"][metric] for c in done], [c["test"][metric] for c in done]
                rows.append((statistics.fmean(vals), statistics.fmean(tests), statistics.stdev(vals) if len(vals) > 1 else None,
                             len(done), label))
        stds = [r[2] for r in rows if r[2] is not None]
        print(f"{task}: {len(rows)} archs started; mean seed-to-seed val std {statistics.fmean(stds):.2f} over {len(stds)} archs"
              if stds else f"{task}: {len(rows)} archs started")
        for val, test, std, n, label in sorted(rows, reverse=True):
            print(f"  {label:32s} val {val:6.2f}{'' if std is None else f' +- {std:.2f}':9s} test {test:6.2f}  ({n} seeds)")


def check_work_dir(work: Path, settings: Mapping[str, Any]) -> None:
    """Cells are reused only for the same settings (tasks may be added later)."""
    from mmsearch.io import atomic_write_json

    def digest(obj: Any) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]

    shared = digest({k: v for k, v in settings.items() if k not in ("tasks", "train")})
    tasks = {t: digest(settings["train"][t]) for t in settings["tasks"]}
    stamp = work / "settings.json"
    saved = json.loads(stamp.read_text()) if stamp.is_file() else {"shared": shared, "tasks": {}}
    changed = [t for t in tasks if saved["tasks"].get(t, tasks[t]) != tasks[t]]
    if saved["shared"] != shared or changed:
        raise SystemExit(f"{work} holds cells of a run with other settings ({', '.join(changed) or 'shared settings'}); "
                         "use another --work-dir or delete it")
    atomic_write_json(stamp, {"shared": shared, "tasks": {**saved["tasks"], **tasks}})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny synthetic data and models (seconds)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--archs", type=int, default=34, help="architectures in the sample (MCAN and the prior included; >= 32 + 2)")
    parser.add_argument("--no-fusion", dest="fusion", action="store_false",
                        help="leave out the six fusion patterns (fusion_<pattern>, added to the sample by default)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per architecture")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the architecture sample")
    parser.add_argument("--workers", type=int, default=2, help="pool processes (1 = in this process)")
    parser.add_argument("--data-root", default=None, help="precomputed data set (default: ensure_dataset())")
    parser.add_argument("--work-dir", default=None, help="cells and runs (default runs/bench_arch_oracle[_quick])")
    parser.add_argument("--status", action="store_true", help="print the finished cells' figures of a run in progress, run nothing")
    parser.add_argument("--partial", action="store_true",
                        help="run nothing; write each task's oracle from the seeds every architecture has finished "
                             "(at least 2), marked partial (a run that could not finish all its seeds)")
    parser.add_argument("--out-dir", default=None, help="where arch_oracle_<task>.json go (default bench/results; --quick: the work dir)")
    args = parser.parse_args(argv)
    if args.seeds < 2 or args.archs < 3:
        parser.error("need --seeds >= 2 (the noise) and --archs >= 3")

    from mmsearch.evaluation.cells import run_cells
    from mmsearch.io import atomic_write_json

    work = Path(args.work_dir or REPO / "runs" / ("bench_arch_oracle_quick" if args.quick else "bench_arch_oracle"))
    if args.quick:
        data_root = "synthetic"
    else:
        from mmsearch.orchestration.precompute import ensure_dataset

        data_root = args.data_root or ensure_dataset()
    from mmsearch.machine import Provenance

    provenance = Provenance(__file__, argv)
    settings = benchmark_settings(args, data_root)
    check_work_dir(work, settings)
    if args.status:
        print_status(settings, work)
        return 0
    start = time.perf_counter()
    if args.partial:
        from mmsearch.evaluation.cells import finished_cells

        results = finished_cells(plan_cells(settings), settings, work, scope=cell_scope)
    else:
        results = run_cells(plan_cells(settings), run_train_cell, settings, work, args.workers, log=lambda line: print(line, flush=True),
                            scope=cell_scope)
    run = {"command": provenance.command,
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {__import__('torch').__version__}",
           "wall_s": time.perf_counter() - start, "workers": args.workers}
    out_dir = Path(args.out_dir) if args.out_dir else (work if args.quick else RESULTS)
    for task in settings["tasks"]:
        task_settings = settings
        if args.partial:
            complete = [seed for seed in settings["seeds"]
                        if all(f"{task}_{label}_seed{seed}" in results for label, _ in settings["archs"])]
            if len(complete) < 2:
                print(f"{task}: {len(complete)} seed(s) finished for every architecture; an oracle needs 2", flush=True)
                continue
            # The cells keep the digest of the whole run's settings; the file says which seeds it holds.
            task_settings = {**settings, "seeds": complete}
            run = {**run, "partial": {"seeds": complete, "planned_seeds": list(settings["seeds"])}}
        oracle = {**oracle_file(task_settings, task, results, run), "provenance": provenance.block()}
        path = out_dir / f"arch_oracle_{task}.json"
        atomic_write_json(path, oracle)
        s = oracle["separation"]
        print(f"{task}: {len(oracle['archs'])} archs x {len(settings['seeds'])} seeds; val {oracle['metric']} best {s['best']} "
              f"{s['best_val']:.2f}, best - MCAN {s['best_minus_mcan_val']:+.2f}, noise std {s['val_noise_std']:.2f}; "
              f"{oracle['train_cpu_s'] / 3600:.2f} CPU-h -> {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
