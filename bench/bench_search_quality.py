"""Search quality on the embedded benchmark: searched vs MCAN vs random architectures, retrained.

For each task (VQA, VG, ITM) on the default embedded data set (``ensure_dataset()``: 1500
procedurally generated scenes through the frozen encoders), at one small depth and width:

1. **search**: the one-shot supernet search (``run_search``, ProxylessNAS binary gates as MMnas;
   ``--strategies proxyless darts`` adds DARTS) with ``--seeds`` seeds, everything else equal;
   each seed's architecture is the argmax at the last epoch (MMnas's ``genotype()``);
2. **proxy**: every search's final supernet scores *every* architecture that is retrained below
   on the search's validation part (the weight-sharing estimate, ``Supernet.fixed_plan``);
3. **train**: from scratch, same depth, width and training budget (``train_derived``, seed 0):
   each searched architecture; the MCAN baseline at this depth (encoder SA, FFN alternating,
   decoder SA, GA, FFN repeated: :func:`mcan_spec`) with ``--noise-seeds`` training seeds, which
   measures the retraining noise; MMnas's MCAN-like *prior* (decoder RSA, GA, FFN repeated:
   ``mcan_prior_spec``), which differs from MCAN only in RSA for SA; ``--randoms`` uniformly
   random architectures from the same pools (``random_spec``).

Reported (printed, ``bench/results/search_quality.json``, ``bench/search_quality.md``): test
metrics of every retrained architecture (mean +- std over repeats) with VQA accuracy by answer
type and by question family, VG acc@0.5 (and by family), ITM R@1/5/10 both ways; op counts of the
searched architectures vs the uniform expectation and which decoder blocks take RSA / GA;
seed-to-seed agreement of the derived architectures vs chance and the final per-block entropy;
the supernet's estimate vs the standalone metric (and Kendall's tau between them over all
retrained architectures).

Every search, proxy evaluation and training is a *cell* with a result file under
``<work-dir>/cells``; a rerun skips the cells that have one (a crashed run loses at most the cells
in flight; a search cell also resumes from its own checkpoints). Cells run in a pool of
``--workers`` processes with one torch thread each.

    python bench/bench_search_quality.py                 # full run (about an hour on 2 cores)
    python bench/bench_search_quality.py --quick         # tiny synthetic data, seconds (the test)
    python bench/bench_search_quality.py --tasks vqa --strategies proxyless darts
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "search_quality.json"
MARKDOWN = REPO / "bench" / "search_quality.md"
TASKS = ("vqa", "vg", "itm")
SHORT = {"self_att": "SA", "guided_att": "GA", "rel_self_att": "RSA", "feed_forward": "FFN"}

# --- the benchmark's settings ---------------------------------------------------------------
# Depth 4 + 6 at H=64 (2 heads of 32): the shipped CPU search configs' size. The space holds
# 2^4 * 4^6 = 65,536 architectures, every decoder op can appear in several positions, and a
# search plus ten retrainings per task fit about 20 minutes of two cores.
MODEL = {"hidden": 64, "head_dim": 32, "enc_depth": 4, "dec_depth": 6}
# ITM: in-batch random negatives only (no mining, no dataset hard negatives) in the search and
# the retraining. An ITM step with the shipped settings runs ~14 rows per pair (mined candidates,
# hard and dataset negatives), ~3x the cost, and in pilots the training loss stayed at ln 2 per
# pair (chance) for 3 epochs with them and for 6 epochs without them.
_ITM_HEAD = {"num_candidates": 1, "use_dataset_negatives": False}
# Searches: configs/search/<task>.yaml (MMnas's algorithm scaled down) with uniform initial
# architecture weights: MMnas's MCAN-like prior starts every decoder block at p=0.71 on one op,
# so the derived architectures, their agreement and their op counts would mostly show the prior.
SEARCH = {task: {"model": {**MODEL, "alpha_init": "uniform"}, "search": {"num_threads": 1, "device": "cpu"},
                 **({"head": _ITM_HEAD} if task == "itm" else {})} for task in TASKS}


# Retraining: configs/train/<task>.yaml at the search's width with a shorter schedule (MMnas's
# 13 epochs with x0.2 at 10 and 12 -> 8 epochs with x0.2 at 6 and 8; ITM 5 epochs, x0.2 at 4),
# validation and test once, after the last epoch. Pilots (MCAN at this size): VQA test accuracy
# 40.4% after 8 epochs, 42.6% after 16 (a longer schedule changes little); VG acc@0.5 54%.
def _train_settings(epochs: int, decay: list[int], limit: dict[str, int], head: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {"model": {"hidden": 64, "head_dim": 32}, "optim": {"lr_decay_epochs": decay}, "data": {"limit": limit},
           "train": {"epochs": epochs, "num_threads": 1, "device": "cpu"},
           "eval": {"every_epochs": epochs, "predictions": False}}
    return {**out, "head": head} if head else out


TRAIN = {
    "vqa": _train_settings(8, [6, 8], {"train": 4000, "val": 800, "test": 800}),
    "vg": _train_settings(8, [6, 8], {"train": 4000, "val": 800, "test": 800}),
    "itm": _train_settings(5, [4], {"train": 1500, "val": 100, "test": 250}, _ITM_HEAD),
}
# --quick: tiny synthetic data and models, a couple of steps per epoch (checks that every cell
# and every table entry is produced; the figures mean nothing).
QUICK_MODEL = {"hidden": 16, "head_dim": 8, "enc_depth": 2, "dec_depth": 3, "word_dim": 8, "relation_dim": 8}
QUICK_SEARCH = {"model": {**QUICK_MODEL, "alpha_init": "uniform"}, "head": {"flat_mlp_size": 16},
                "search": {"epochs": 2, "warmup_epochs": 1, "batch_size": 8, "arch_batch_size": 4, "arch_every": 1,
                           "max_steps_per_epoch": 2, "num_threads": 1, "device": "cpu"},
                "eval": {"batch_size": 64}}
QUICK_TRAIN = {"model": {k: v for k, v in QUICK_MODEL.items() if k not in ("enc_depth", "dec_depth")},
               "head": {"flat_mlp_size": 16}, "optim": {"lr_decay_epochs": []},
               "train": {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 2, "num_threads": 1, "device": "cpu"},
               "eval": {"batch_size": 64, "predictions": False}}
QUICK_DATA = {"train_images": 20, "val_images": 6, "test_images": 6, "region_dim": 8, "text_state_dim": 8}


def benchmark_settings(args: argparse.Namespace, data_root: str) -> dict[str, Any]:
    """Everything that decides the results (stored with them and checked on resume)."""
    quick = bool(args.quick)
    model = QUICK_MODEL if quick else MODEL
    return {
        "quick": quick,
        "data_root": data_root,
        "synthetic": QUICK_DATA if quick else None,
        "tasks": list(args.tasks),
        "strategies": list(args.strategies),
        "search_seeds": list(range(args.seeds)),
        "random_seeds": [1000 + i for i in range(args.randoms)],
        "noise_seeds": list(range(args.noise_seeds)),
        "depths": [model["enc_depth"], model["dec_depth"]],
        "search": {t: copy.deepcopy(QUICK_SEARCH if quick else SEARCH[t]) for t in args.tasks},
        "train": {t: copy.deepcopy(QUICK_TRAIN if quick else TRAIN[t]) for t in args.tasks},
    }


def mcan_spec(enc_depth: int, dec_depth: int) -> Any:
    """MCAN as a genotype at any depth: encoder SA, FFN alternating; decoder SA, GA, FFN repeated
    (``named_spec("mcan")`` at 6 + 6 units = 12 + 18 blocks). ``mcan_prior_spec`` is MMnas's search
    prior instead, with RSA in place of the decoder SA."""
    from mmsearch.nas import ArchSpec

    enc, dec = ("self_att", "feed_forward"), ("self_att", "guided_att", "feed_forward")
    return ArchSpec(enc=tuple(enc[i % 2] for i in range(enc_depth)), dec=tuple(dec[i % 3] for i in range(dec_depth)),
                    source=f"MCAN pattern at {enc_depth}+{dec_depth} blocks")


def arch_line(spec: Mapping[str, Any]) -> str:
    """``"SA FFN SA FFN | GA RSA ..."`` of a spec dict (``{"enc": [[op]], "dec": [[op]]}``)."""
    ops = {c: [SHORT.get(b[0] if isinstance(b, list) else b, b) for b in spec[c]] for c in ("enc", "dec")}
    return " ".join(ops["enc"]) + " | " + " ".join(ops["dec"])


# --- cells ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One unit of work with a result file; ``needs``: cells whose results it reads."""

    kind: str  # search | proxy | train
    task: str
    name: str  # unique, file-name safe
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    needs: tuple[str, ...] = ()


def plan_cells(settings: Mapping[str, Any]) -> list[Cell]:
    """Every cell of the benchmark, in a good start order (long searches first)."""
    cells: list[Cell] = []
    for task in settings["tasks"]:
        searches = [f"search_{task}_{s}_seed{seed}" for s in settings["strategies"] for seed in settings["search_seeds"]]
        for strategy in settings["strategies"]:
            for seed in settings["search_seeds"]:
                cells.append(Cell("search", task, f"search_{task}_{strategy}_seed{seed}", {"strategy": strategy, "seed": seed}))
        for label, arch in baseline_archs(settings):
            seeds = settings["noise_seeds"] if label == "mcan" else [0]
            for seed in seeds:
                cells.append(Cell("train", task, f"train_{task}_{label}_seed{seed}", {"label": label, "arch": arch, "seed": seed}))
        for strategy in settings["strategies"]:
            for seed in settings["search_seeds"]:
                source = f"search_{task}_{strategy}_seed{seed}"
                label = f"searched_{strategy}_seed{seed}"
                cells.append(Cell("train", task, f"train_{task}_{label}_seed0", {"label": label, "search": source, "seed": 0}, (source,)))
                cells.append(Cell("proxy", task, f"proxy_{task}_{strategy}_seed{seed}", {"search": source}, tuple(searches)))
    order = {"search": 0, "train": 1, "proxy": 2}
    return sorted(cells, key=lambda c: (order[c.kind], bool(c.needs)))


def baseline_archs(settings: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The non-searched architectures, same depth and pools as the search: MCAN, MMnas's prior, randoms."""
    from mmsearch.nas import DEFAULT_POOLS, mcan_prior_spec, random_spec

    enc_depth, dec_depth = settings["depths"]
    out = [("mcan", mcan_spec(enc_depth, dec_depth).to_dict()), ("mmnas_prior", mcan_prior_spec(enc_depth, dec_depth).to_dict())]
    for seed in settings["random_seeds"]:
        out.append((f"random{seed}", random_spec(enc_depth, dec_depth, DEFAULT_POOLS, seed=seed).to_dict()))
    return out


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in, recursively for nested dicts (neither is modified)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _recipe(kind: str, task: str) -> dict[str, Any]:
    from mmsearch.config import read_yaml

    raw = read_yaml(REPO / "configs" / kind / f"{task}.yaml")
    return raw["recipe"] if "recipe" in raw else raw


def _task_data(settings: Mapping[str, Any], task: str, data_cfg: Any) -> Any:
    if settings["synthetic"] is not None:
        from mmsearch.data.synthetic import SyntheticTaskData

        return SyntheticTaskData(task, arch_fraction=data_cfg.arch_fraction, split_seed=data_cfg.split_seed,
                                 limit=dict(data_cfg.limit), **settings["synthetic"])
    from mmsearch.data.tasks import open_task_data

    return open_task_data(data_cfg)


def _root(settings: Mapping[str, Any]) -> str:
    return "synthetic" if settings["synthetic"] is not None else settings["data_root"]


def search_config(settings: Mapping[str, Any], task: str, strategy: str, seed: int, out_dir: Path) -> Any:
    from mmsearch.config import load_config
    from mmsearch.recipes.search_config import SearchConfig

    raw = deep_merge(_recipe("search", task), settings["search"][task])
    raw = deep_merge(raw, {"data": {"root": _root(settings)}, "search": {"strategy": strategy}, "seed": seed,
                           "output_dir": str(out_dir)})
    return load_config(SearchConfig, raw)


def train_config(settings: Mapping[str, Any], task: str, arch: Mapping[str, Any], seed: int, out_dir: Path) -> Any:
    from mmsearch.config import load_config
    from mmsearch.recipes.train_derived_config import TrainDerivedConfig

    raw = deep_merge(_recipe("train", task), settings["train"][task])
    raw = deep_merge(raw, {"data": {"root": _root(settings)}, "seed": seed, "output_dir": str(out_dir)})
    raw["arch"] = dict(arch)
    return load_config(TrainDerivedConfig, raw)


def run_cell(cell: Cell, settings: Mapping[str, Any], work_dir: str) -> dict[str, Any]:
    """Run one cell (in a pool worker or in this process) and write its result file atomically."""
    import torch

    from mmsearch.io import atomic_write_json

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    work = Path(work_dir)
    load_before, start = os.getloadavg()[0], time.perf_counter()
    runner = {"search": _run_search, "proxy": _run_proxy, "train": _run_train}[cell.kind]
    try:
        result = runner(cell, settings, work)
    finally:
        torch.set_num_threads(threads)  # the recipes set it from their configs; in-process runs get theirs back
    result.update(kind=cell.kind, task=cell.task, name=cell.name, wall_s=time.perf_counter() - start,
                  load_1m=[load_before, os.getloadavg()[0]])
    atomic_write_json(cell_path(work, cell.name), result)
    return result


def cell_path(work: Path, name: str) -> Path:
    return work / "cells" / f"{name}.json"


def _run_search(cell: Cell, settings: Mapping[str, Any], work: Path) -> dict[str, Any]:
    from mmsearch.nas import arch_entropy
    from mmsearch.recipes.context import LocalContext
    from mmsearch.recipes.search import run_search

    out = work / "runs" / cell.name
    cfg = search_config(settings, cell.task, cell.params["strategy"], cell.params["seed"], out)
    context = LocalContext(out)  # resumes from its own checkpoints after a crash
    resumed = context.restored_checkpoint() is not None
    result = run_search(cfg, context, _task_data(settings, cell.task, cfg.data))
    import torch

    probs = result.final_spec.probs or {}
    entropy = arch_entropy({c: torch.tensor(probs[c]).clamp_min(1e-300).log() for c in ("enc", "dec")})
    last = result.history[-1]
    return {
        "strategy": cell.params["strategy"],
        "seed": cell.params["seed"],
        "resumed": resumed,
        "final_arch": result.final_spec.replace(config=None).to_dict(),
        "final_val_metric": last["val_metric"],
        "metric": result.metric,
        "best_epoch": result.best_epoch,
        "best_val_metric": result.best_metric,
        "best_arch": arch_line(result.best_spec.to_dict()) if result.best_spec is not None else None,
        "entropy": {"enc_mean": entropy["enc_mean"], "dec_mean": entropy["dec_mean"], "normalized_mean": entropy["normalized_mean"]},
        "history": [{k: m.get(k) for k in ("epoch", "warmup", "val_metric", "arch", "arch_changes", "entropy_norm", "train_s")}
                    for m in result.history],
        "search_s": sum(m["epoch_s"] for m in result.history),
        "output_dir": str(out),
    }


def _run_proxy(cell: Cell, settings: Mapping[str, Any], work: Path) -> dict[str, Any]:
    """The search's final supernet scores every retrained architecture on the search's val part."""
    import torch

    from mmsearch.heads import build_head, evaluate
    from mmsearch.nas import ArchSpec, Supernet
    from mmsearch.recipes.search_config import resolve_config, supernet_config
    from mmsearch.recipes.search_state import STATE_NAME

    search = json.loads(cell_path(work, cell.params["search"]).read_text())
    out = Path(search["output_dir"])
    cfg = search_config(settings, cell.task, search["strategy"], search["seed"], out)
    data = _task_data(settings, cell.task, cfg.data)
    cfg = resolve_config(cfg, data.info)
    latest = (out / "latest_checkpoint").read_text().strip()
    state = torch.load(out / "checkpoints" / latest / STATE_NAME, map_location="cpu", weights_only=True)
    embedding = data.info.embedding_init if cfg.data.text_input == "tokens" else None
    supernet = Supernet(supernet_config(cfg), None if embedding is None else torch.as_tensor(embedding).float())
    head = build_head(cfg.head, cfg.model.hidden)
    supernet.load_state_dict(state["supernet"])
    head.load_state_dict(state["head"])
    supernet.eval()
    head.eval()
    scores = {}
    for label, arch in retrained_archs(cell.task, settings, work):
        plan = supernet.fixed_plan(ArchSpec.from_dict(arch))
        with torch.inference_mode():
            batches = data.batches("val", batch_size=cfg.eval.batch_size, shuffle=False)
            values = evaluate(cfg.head, lambda batch, plan=plan: supernet(batch, head, plan), batches)
        scores[label] = values[cfg.primary_metric]
    return {"search": cell.params["search"], "metric": cfg.primary_metric, "scores": scores}


def retrained_archs(task: str, settings: Mapping[str, Any], work: Path) -> list[tuple[str, dict[str, Any]]]:
    """(label, spec dict) of every architecture retrained for ``task`` (searched ones from their cells)."""
    out = []
    for strategy in settings["strategies"]:
        for seed in settings["search_seeds"]:
            found = json.loads(cell_path(work, f"search_{task}_{strategy}_seed{seed}").read_text())
            out.append((f"searched_{strategy}_seed{seed}", found["final_arch"]))
    return out + baseline_archs(settings)


def _run_train(cell: Cell, settings: Mapping[str, Any], work: Path) -> dict[str, Any]:
    from mmsearch.recipes.context import LocalContext
    from mmsearch.recipes.train_derived import train_derived

    arch = cell.params.get("arch")
    if arch is None:
        found = json.loads(cell_path(work, cell.params["search"]).read_text())
        arch = {k: v for k, v in found["final_arch"].items() if k in ("enc", "dec", "op_pools", "seed", "task")}
        arch["source"] = f"bench search {cell.params['search']}"
    out = work / "runs" / cell.name
    cfg = train_config(settings, cell.task, arch, cell.params["seed"], out)
    data = _task_data(settings, cell.task, cfg.data)
    result = train_derived(cfg, LocalContext(out, keep_checkpoints=1), data)
    final = result.metrics
    return {
        "label": cell.params["label"],
        "seed": cell.params["seed"],
        "arch": arch_line(arch),
        "metric": cfg.primary_metric,
        "val": {k[4:]: v for k, v in final.items() if k.startswith("val_") and k != "val_metric"},
        "test": {k[5:]: v for k, v in final.items() if k.startswith("test_")},
        "train_loss": final.get("train_loss"),
        "parameters": _parameters(result.config, data),
        "train_s": sum(m["epoch_s"] for m in result.history),
    }


def _parameters(cfg: Any, data: Any) -> int:
    """Parameters of the trained model (network + head), counted on a fresh build."""
    from mmsearch.recipes.train_derived_engine import build_model

    return sum(p.numel() for p in build_model(cfg, data.info).parameters())


# --- the pool --------------------------------------------------------------------------------
def run_cells(cells: Sequence[Cell], settings: Mapping[str, Any], work: Path, workers: int,
              log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Run the cells without a result file, respecting ``needs``; returns every cell's result."""
    done = {c.name: json.loads(cell_path(work, c.name).read_text()) for c in cells if cell_path(work, c.name).is_file()}
    pending = [c for c in cells if c.name not in done]
    if done:
        log(f"{len(done)} cells already done, {len(pending)} to run")
    ready = lambda c: all(n in done for n in c.needs)  # noqa: E731
    if workers <= 1:
        while pending:
            cell = next((c for c in pending if ready(c)), None)
            if cell is None:
                raise RuntimeError(f"cells wait for missing results: {[c.name for c in pending]}")
            pending.remove(cell)
            done[cell.name] = run_cell(cell, settings, str(work))
            log(_line(done[cell.name]))
        return done
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        running: dict[Future, Cell] = {}
        while pending or running:
            for cell in [c for c in pending if ready(c)][: max(0, workers - len(running))]:
                pending.remove(cell)
                running[pool.submit(run_cell, cell, dict(settings), str(work))] = cell
            if not running:
                raise RuntimeError(f"cells wait for missing results: {[c.name for c in pending]}")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                cell = running.pop(future)
                done[cell.name] = future.result()
                log(_line(done[cell.name]))
    return done


def _line(result: Mapping[str, Any]) -> str:
    name, wall = result["name"], result["wall_s"]
    if result["kind"] == "search":
        return f"{name}: {result['final_arch'] and arch_line(result['final_arch'])}, val {result['metric']} {result['final_val_metric']:.2f} ({wall:.0f} s)"
    if result["kind"] == "train":
        return f"{name}: {result['arch']}, test {result['metric']} {result['test'][result['metric']]:.2f} ({wall:.0f} s)"
    return f"{name}: scored {len(result['scores'])} architectures ({wall:.0f} s)"


# --- analysis (pure functions of the cell results) --------------------------------------------
def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value)."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def chance_agreement(pools: Mapping[str, Sequence[str]], depths: Sequence[int]) -> float:
    """Expected fraction of blocks two independent uniform draws from the pools agree on."""
    blocks = [1.0 / len(pools["enc"])] * depths[0] + [1.0 / len(pools["dec"])] * depths[1]
    return sum(blocks) / len(blocks)


def agreement(a: Mapping[str, Any], b: Mapping[str, Any], chains: Sequence[str] = ("enc", "dec")) -> float:
    """Fraction of blocks (over ``chains``) where two spec dicts run the same op."""
    pairs = [(x[0], y[0]) for c in chains for x, y in zip(a[c], b[c], strict=True)]
    return sum(x == y for x, y in pairs) / len(pairs)


def op_frequency(specs: Sequence[Mapping[str, Any]], pools: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Per chain and op: the count in each spec, their mean, and the uniform expectation (depth / K)."""
    out: dict[str, Any] = {}
    for chain in ("enc", "dec"):
        depth = len(specs[0][chain])
        out[chain] = {
            op: {"counts": [sum(b[0] == op for b in s[chain]) for s in specs],
                 "mean": statistics.fmean(sum(b[0] == op for b in s[chain]) for s in specs),
                 "uniform": depth / len(pools[chain])}
            for op in pools[chain]
        }
    return out


def block_choices(specs: Sequence[Mapping[str, Any]], chain: str = "dec") -> list[dict[str, int]]:
    """Per block of ``chain``: how many specs chose each op there."""
    depth = len(specs[0][chain])
    return [dict(sorted(_count(s[chain][i][0] for s in specs).items())) for i in range(depth)]


def _count(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (NaN when undefined: fewer than 2 points or a constant sequence)."""
    if len(x) < 2:
        return math.nan
    from scipy.stats import kendalltau

    tau = kendalltau(x, y).statistic
    return float(tau) if tau is not None else math.nan


def analyse(settings: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The report's figures per task (see the module docstring)."""
    from mmsearch.nas import DEFAULT_POOLS

    out: dict[str, Any] = {}
    for task in settings["tasks"]:
        trains = [r for r in results.values() if r["kind"] == "train" and r["task"] == task]
        metric = trains[0]["metric"]
        groups: dict[str, list[Mapping[str, Any]]] = {}
        for r in trains:
            groups.setdefault(_group(r["label"]), []).append(r)
        rows = {}
        for r in sorted(trains, key=lambda r: (_order(r["label"]), r["label"], r["seed"])):
            rows[f"{r['label']}/seed{r['seed']}"] = {"label": r["label"], "group": _group(r["label"]), "seed": r["seed"],
                                                     "arch": r["arch"], "test": r["test"], "val": r["val"], "train_s": r["train_s"]}
        keys = sorted({k for r in trains for k in r["test"]})
        summary = {g: {k: mean_std([r["test"][k] for r in rs if k in r["test"]]) for k in keys} for g, rs in groups.items()}
        noise = summary.get("mcan", {}).get(metric, {"std": math.nan})["std"]
        per_strategy = {}
        for strategy in settings["strategies"]:
            searches = [results[f"search_{task}_{strategy}_seed{s}"] for s in settings["search_seeds"]]
            specs = [s["final_arch"] for s in searches]
            pools = specs[0].get("op_pools") or DEFAULT_POOLS
            pair = [agreement(a, b) for a, b in itertools.combinations(specs, 2)]
            proxies = [results[f"proxy_{task}_{strategy}_seed{s}"]["scores"] for s in settings["search_seeds"]]
            standalone = {r["label"]: r["test"][metric] for r in trains if r["seed"] == 0}
            taus = []
            for scores in proxies:
                labels = [lab for lab in scores if lab in standalone]
                taus.append(kendall_tau([scores[lab] for lab in labels], [standalone[lab] for lab in labels]))
            per_strategy[strategy] = {
                "archs": [arch_line(s) for s in specs],
                "search_val_final": [s["final_val_metric"] for s in searches],
                "search_val_best": [s["best_val_metric"] for s in searches],
                "retrained_val": [_by_label(trains, f"searched_{strategy}_seed{s['seed']}")["val"].get(metric) for s in searches],
                "retrained_test": [_by_label(trains, f"searched_{strategy}_seed{s['seed']}")["test"].get(metric) for s in searches],
                "agreement": {
                    "pairs": pair, "mean": statistics.fmean(pair) if pair else math.nan,
                    "enc_mean": statistics.fmean(agreement(a, b, ("enc",)) for a, b in itertools.combinations(specs, 2)) if pair else math.nan,
                    "dec_mean": statistics.fmean(agreement(a, b, ("dec",)) for a, b in itertools.combinations(specs, 2)) if pair else math.nan,
                    "chance": chance_agreement(pools, settings["depths"]),
                    "chance_enc": 1.0 / len(pools["enc"]), "chance_dec": 1.0 / len(pools["dec"]),
                },
                "entropy": {k: mean_std([s["entropy"][k] for s in searches]) for k in ("enc_mean", "dec_mean", "normalized_mean")},
                "entropy_max": {"enc": math.log(len(pools["enc"])), "dec": math.log(len(pools["dec"]))},
                "op_frequency": op_frequency(specs, pools),
                "decoder_blocks": block_choices(specs, "dec"),
                "encoder_blocks": block_choices(specs, "enc"),
                "proxy": {"scores": proxies, "kendall_tau": taus, "kendall_tau_mean": _nanmean(taus)},
                "search_s": [s["search_s"] for s in searches],
            }
        searched = [g for g in summary if g.startswith("searched_")]
        random_mean = summary.get("random", {}).get(metric, {}).get("mean", math.nan)
        out[task] = {
            "metric": metric,
            "rows": rows,
            "summary": summary,
            "retrain_noise_std": noise,
            "searched_minus_random": {g: summary[g][metric]["mean"] - random_mean for g in searched},
            "searched_minus_mcan": {g: summary[g][metric]["mean"] - summary.get("mcan", {}).get(metric, {}).get("mean", math.nan)
                                    for g in searched},
            "search": per_strategy,
        }
    return out


def _group(label: str) -> str:
    if label.startswith("random"):
        return "random"
    if label.startswith("searched_"):
        return "searched_" + label.split("_")[1]
    return label


def _order(label: str) -> int:
    return 0 if label.startswith("searched") else 1 if label == "mcan" else 2 if label == "mmnas_prior" else 3


def _by_label(trains: Sequence[Mapping[str, Any]], label: str) -> Mapping[str, Any]:
    return next(r for r in trains if r["label"] == label)


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.fmean(finite) if finite else math.nan


# --- the report ------------------------------------------------------------------------------
PREFERRED = {
    "vqa": ["vqa_acc", "vqa_acc_yes_no", "vqa_acc_number", "vqa_acc_other"],
    "vg": ["vg_acc", "vg_miou"],
    "itm": ["itm_i2t_r1", "itm_i2t_r5", "itm_i2t_r10", "itm_t2i_r1", "itm_t2i_r5", "itm_t2i_r10", "itm_rsum"],
}


def columns(task: str, keys: Iterable[str]) -> list[str]:
    """Table columns: the task's main metrics, then per-family accuracies."""
    keys = set(keys)
    main = [k for k in PREFERRED[task] if k in keys]
    families = sorted(k for k in keys if "_family_" in k)
    return main + families


def _header(key: str) -> str:
    return (key.replace("vqa_acc_family_", "").replace("vg_acc_family_", "").replace("vqa_acc_", "").replace("itm_", "")
            .replace("vqa_acc", "acc").replace("vg_acc", "acc@0.5").replace("vg_miou", "mIoU"))


def markdown(report: Mapping[str, Any]) -> str:
    settings, figures, run = report["settings"], report["tasks"], report["run"]
    lines = ["## Search quality: searched vs MCAN vs random architectures, retrained", ""]
    lines += [
        f"Embedded benchmark (`{'synthetic --quick' if settings['quick'] else 'ensure_dataset(): 1500 scenes'}`), "
        f"depth {settings['depths'][0]} + {settings['depths'][1]} blocks, H={report['width']['hidden']} "
        f"({report['width']['heads']} heads), pools enc {{SA, FFN}}, dec {{SA, RSA, GA, FFN}}. "
        f"Searches: {', '.join(settings['strategies'])}, seeds {settings['search_seeds']}, uniform initial "
        "architecture weights, the settings of `configs/search/<task>.yaml` otherwise; each seed's "
        "architecture is the argmax after the last epoch. Retraining from scratch with the same "
        "width, depth and budget (`configs/train/<task>.yaml`, shorter schedule), training seed 0; "
        f"MCAN with training seeds {settings['noise_seeds']} (the retraining noise). Test split metrics, %.",
        "",
        f"Command: `{run['command']}`. Machine: {run['machine']}; wall time {run['wall_s'] / 60:.1f} min "
        f"({run['cell_s'] / 60:.1f} process-min in {run['cells']} cells, {run['workers']} workers x 1 torch thread); "
        f"1-min load average {run['load_1m']['min']:.1f}-{run['load_1m']['max']:.1f} (mean {run['load_1m']['mean']:.1f}) "
        "while it ran (shared machine: accuracy does not depend on load, times do).",
        "",
    ]
    for task, fig in figures.items():
        metric = fig["metric"]
        cols = columns(task, fig["summary"][next(iter(fig["summary"]))].keys())
        lines += [f"### {task.upper()}", "", "| architecture | " + " | ".join(_header(c) for c in cols) + " |",
                  "|---|" + "---:|" * len(cols)]
        for key, row in fig["rows"].items():
            lines.append(f"| {row['label']} s{row['seed']} `{row['arch']}` | " + " | ".join(f"{row['test'].get(c, math.nan):.1f}" for c in cols) + " |")
        for group, values in fig["summary"].items():
            if values[metric]["n"] > 1:
                lines.append(f"| **{group}** (n={values[metric]['n']}) | "
                             + " | ".join(f"{values[c]['mean']:.1f} ± {values[c]['std']:.1f}" for c in cols) + " |")
        lines += ["", f"Retraining noise (MCAN, std over training seeds): {fig['retrain_noise_std']:.2f} points of {_header(metric)}. "
                  + "; ".join(f"{g} - random mean: {d:+.2f}" for g, d in fig["searched_minus_random"].items()) + "; "
                  + "; ".join(f"{g} - MCAN mean: {d:+.2f}" for g, d in fig["searched_minus_mcan"].items()) + ".", ""]
        for strategy, s in fig["search"].items():
            freq = s["op_frequency"]
            lines += [f"Search ({strategy}):", "", "| | " + " | ".join(f"seed {i}" for i in range(len(s["archs"]))) + " |",
                      "|---|" + "---|" * len(s["archs"]),
                      "| derived architecture | " + " | ".join(f"`{a}`" for a in s["archs"]) + " |",
                      f"| supernet val {_header(metric)} (last epoch) | " + " | ".join(f"{v:.1f}" for v in s["search_val_final"]) + " |",
                      f"| retrained val {_header(metric)} | " + " | ".join(_fmt(v) for v in s["retrained_val"]) + " |",
                      f"| retrained test {_header(metric)} | " + " | ".join(_fmt(v) for v in s["retrained_test"]) + " |",
                      "| Kendall tau, supernet estimate vs retrained test, all retrained archs | "
                      + " | ".join(_fmt(t, 2) for t in s["proxy"]["kendall_tau"]) + " |",
                      "", "| op | " + " | ".join(f"seed {i}" for i in range(len(s["archs"]))) + " | mean | uniform |",
                      "|---|" + "---:|" * (len(s["archs"]) + 2)]
            for chain in ("enc", "dec"):
                for op, f in freq[chain].items():
                    lines.append(f"| {chain} {SHORT.get(op, op)} | " + " | ".join(str(c) for c in f["counts"]) + f" | {f['mean']:.2f} | {f['uniform']:.2f} |")
            blocks = "; ".join(f"{i + 1}: " + ", ".join(f"{SHORT.get(op, op)}x{n}" for op, n in b.items())
                               for i, b in enumerate(s["decoder_blocks"]))
            ag, ent = s["agreement"], s["entropy"]
            lines += ["", f"Decoder block choices over seeds: {blocks}.", "",
                      f"Seed-to-seed agreement (fraction of blocks with the same op, mean over pairs): {ag['mean']:.2f} "
                      f"(encoder {ag['enc_mean']:.2f}, decoder {ag['dec_mean']:.2f}); chance given the pools: {ag['chance']:.2f} "
                      f"(encoder {ag['chance_enc']:.2f}, decoder {ag['chance_dec']:.2f}). Final mean per-block entropy: "
                      f"encoder {ent['enc_mean']['mean']:.3f} of max {s['entropy_max']['enc']:.3f} nats, decoder "
                      f"{ent['dec_mean']['mean']:.3f} of max {s['entropy_max']['dec']:.3f} (normalised {ent['normalized_mean']['mean']:.2f}).", ""]
    return "\n".join(lines)


INTERPRETATION = "### Interpretation"


def kept_interpretation(previous: str) -> str:
    """The hand-written ``### Interpretation`` section (to the end) of a previous markdown file, or ""."""
    at = previous.find("\n" + INTERPRETATION + "\n")
    return previous[at + 1:] if at >= 0 else ""


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def print_summary(figures: Mapping[str, Any]) -> None:
    for task, fig in figures.items():
        metric = fig["metric"]
        print(f"\n== {task}: test {metric}")
        for group, values in fig["summary"].items():
            print(f"  {group:22s} {values[metric]['mean']:7.2f} ± {values[metric]['std']:5.2f} (n={values[metric]['n']})")
        for strategy, s in fig["search"].items():
            print(f"  {strategy}: agreement {s['agreement']['mean']:.2f} (chance {s['agreement']['chance']:.2f}), "
                  f"kendall tau {s['proxy']['kendall_tau_mean']:.2f}, archs {s['archs']}")


# --- main ------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny synthetic data and models (seconds)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--strategies", nargs="+", default=["proxyless"], help="search strategies (proxyless, darts, spos)")
    parser.add_argument("--seeds", type=int, default=3, help="search seeds per task and strategy")
    parser.add_argument("--randoms", type=int, default=3, help="random architectures per task")
    parser.add_argument("--noise-seeds", type=int, default=3, help="training seeds of the MCAN baseline (retraining noise)")
    parser.add_argument("--workers", type=int, default=2, help="pool processes (1 = run in this process)")
    parser.add_argument("--data-root", default=None, help="precomputed data set (default: ensure_dataset())")
    parser.add_argument("--work-dir", default=None, help="cell results and run directories (default: runs/bench_search_quality[_quick])")
    parser.add_argument("--out", default=None, help=f"results JSON (default: {RESULTS.relative_to(REPO)}; --quick: <work-dir>/search_quality.json)")
    parser.add_argument("--markdown", default=None, help=f"markdown section (default: {MARKDOWN.relative_to(REPO)}; --quick: in <work-dir>)")
    args = parser.parse_args(argv)
    if args.seeds < 2 or args.randoms < 1 or args.noise_seeds < 2:
        parser.error("need --seeds >= 2 (agreement), --randoms >= 1 and --noise-seeds >= 2 (noise)")

    from mmsearch.io import atomic_write_json, atomic_write_text

    work = Path(args.work_dir or REPO / "runs" / ("bench_search_quality_quick" if args.quick else "bench_search_quality"))
    if args.quick:
        data_root = "synthetic"
    else:
        from mmsearch.orchestration.precompute import ensure_dataset

        data_root = args.data_root or ensure_dataset()
    settings = benchmark_settings(args, data_root)
    _check_work_dir(work, settings)
    cells = plan_cells(settings)
    start, loads = time.perf_counter(), [os.getloadavg()[0]]
    print(f"{len(cells)} cells in {work}; data {data_root}", flush=True)
    results = run_cells(cells, settings, work, args.workers, log=lambda line: (loads.append(os.getloadavg()[0]), print(line, flush=True)))
    wall = time.perf_counter() - start
    loads += [x for r in results.values() for x in r["load_1m"]]
    figures = analyse(settings, results)
    model = settings["search"][settings["tasks"][0]]["model"]
    report = {
        "settings": settings,
        "width": {"hidden": model["hidden"], "heads": model["hidden"] // model["head_dim"]},
        "run": {
            "command": "python bench/bench_search_quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {__import__('torch').__version__}, Python {platform.python_version()}",
            "wall_s": wall,  # this invocation (cells done earlier are not counted)
            "cell_s": sum(r["wall_s"] for r in results.values()),
            "cells": len(results),
            "workers": args.workers,
            "load_1m": {"min": min(loads), "max": max(loads), "mean": statistics.fmean(loads)},
        },
        "tasks": figures,
        "cells": results,
    }
    out = Path(args.out) if args.out else (work / "search_quality.json" if args.quick else RESULTS)
    md = Path(args.markdown) if args.markdown else (work / "search_quality.md" if args.quick else MARKDOWN)
    atomic_write_json(out, report)
    # A hand-written interpretation below the generated tables survives regeneration.
    previous = kept_interpretation(md.read_text()) if md.is_file() else ""
    atomic_write_text(md, markdown(report) + ("\n" + previous if previous else ""))
    print_summary(figures)
    print(f"\nwrote {out} and {md} ({wall / 60:.1f} min)")
    return 0


def _check_work_dir(work: Path, settings: Mapping[str, Any]) -> None:
    """Cells of a previous run are reused only with the same settings (else: another --work-dir);
    tasks may be added to a work directory later."""
    from mmsearch.io import atomic_write_json

    def digest(obj: Any) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]

    shared = digest({k: v for k, v in settings.items() if k not in ("tasks", "search", "train")})
    tasks = {t: digest([settings["search"][t], settings["train"][t]]) for t in settings["tasks"]}
    stamp = work / "settings.json"
    saved = json.loads(stamp.read_text()) if stamp.is_file() else {"shared": shared, "tasks": {}}
    changed = [t for t in tasks if saved["tasks"].get(t, tasks[t]) != tasks[t]]
    if saved["shared"] != shared or changed:
        raise SystemExit(f"{work} holds cells of a run with other settings ({', '.join(changed) or 'shared settings'}); "
                         "use another --work-dir or delete it")
    atomic_write_json(stamp, {"shared": shared, "tasks": {**saved["tasks"], **tasks}})


if __name__ == "__main__":
    sys.exit(main())
