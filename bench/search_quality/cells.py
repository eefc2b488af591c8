"""The search-quality benchmark's cells (search, proxy evaluation, retraining), each with a result
file under ``<work-dir>/cells``, and the process pool that runs them respecting their order."""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .settings import REPO, arch_line, deep_merge, mcan_spec


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
    from mmsearch.recipes.search.config import SearchConfig

    raw = deep_merge(_recipe("search", task), settings["search"][task])
    raw = deep_merge(raw, {"data": {"root": _root(settings)}, "search": {"strategy": strategy}, "seed": seed,
                           "output_dir": str(out_dir)})
    return load_config(SearchConfig, raw)


def train_config(settings: Mapping[str, Any], task: str, arch: Mapping[str, Any], seed: int, out_dir: Path) -> Any:
    from mmsearch.config import load_config
    from mmsearch.recipes.train_derived.config import TrainDerivedConfig

    raw = deep_merge(_recipe("train", task), settings["train"][task])
    raw = deep_merge(raw, {"data": {"root": _root(settings)}, "seed": seed, "output_dir": str(out_dir)})
    raw["arch"] = dict(arch)
    return load_config(TrainDerivedConfig, raw)


def run_cell(cell: Cell, settings: Mapping[str, Any], work_dir: str) -> dict[str, Any]:
    """Run one cell (in a pool worker or in this process) and write its result file atomically."""
    from mmsearch.io import atomic_write_json
    from mmsearch.machine import git_state
    from mmsearch.threads import torch_threads

    code = git_state()  # a work dir resumed across commits mixes cells of different code: each says which
    work = Path(work_dir)
    load_before, start = os.getloadavg()[0], time.perf_counter()
    runner = {"search": _run_search, "proxy": _run_proxy, "train": _run_train}[cell.kind]
    with torch_threads(1):  # in-process runs get the caller's count back
        result = runner(cell, settings, work)
    result.update(kind=cell.kind, task=cell.task, name=cell.name, wall_s=time.perf_counter() - start,
                  load_1m=[load_before, os.getloadavg()[0]], commit=code["commit"], dirty=code["dirty"])
    atomic_write_json(cell_path(work, cell.name), result)
    return result


def cell_path(work: Path, name: str) -> Path:
    return work / "cells" / f"{name}.json"


def _run_search(cell: Cell, settings: Mapping[str, Any], work: Path) -> dict[str, Any]:
    from mmsearch.nas import block_entropy
    from mmsearch.recipes.context import LocalContext
    from mmsearch.recipes.search.recipe import run_search

    out = work / "runs" / cell.name
    cfg = search_config(settings, cell.task, cell.params["strategy"], cell.params["seed"], out)
    context = LocalContext(out)  # resumes from its own checkpoints after a crash
    resumed = context.restored_checkpoint() is not None
    result = run_search(cfg, context, _task_data(settings, cell.task, cfg.data))
    entropy = block_entropy(result.final_spec.probs or {})
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

    from mmsearch.tasks import build_head, evaluate
    from mmsearch.nas import ArchSpec, Supernet
    from mmsearch.recipes.search.config import resolve_config, supernet_config
    from mmsearch.recipes.search.state import STATE_NAME

    search = json.loads(cell_path(work, cell.params["search"]).read_text())
    out = Path(search["output_dir"])
    cfg = search_config(settings, cell.task, search["strategy"], search["seed"], out)
    data = _task_data(settings, cell.task, cfg.data)
    cfg = resolve_config(cfg, data.info)
    latest = (out / "latest_checkpoint").read_text().strip()
    state = torch.load(out / "checkpoints" / latest / STATE_NAME, map_location="cpu", weights_only=True)
    embedding = data.info.embedding_init if cfg.data.text_input == "tokens" else None
    supernet = Supernet(supernet_config(cfg), None if embedding is None else torch.as_tensor(embedding).float())
    head = build_head(cfg.head, cfg.model.hidden, layer_norm=cfg.model.layer_norm)
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
    from mmsearch.recipes.train_derived.recipe import train_derived

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
    from mmsearch.recipes.train_derived.engine import build_model

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
