"""FuseMix on the embedded scenes: test recall@1/5/10 both ways, mixup vs no mixup, by data-set size.

What is measured. The embedded scenes go through the frozen encoders once (``ensure_dataset``:
EfficientNet-Lite0 whole-image latents at 224 px, 1280-d, and MiniLM caption latents, 384-d; the ``pairs``
table of each split, built on first use and cached by fingerprint like every data set; see
``DATASET_OVERRIDES`` for why 224 px). Then the FuseMix recipe
itself (``train_fusemix``, ``configs/fusemix/scenes.yaml``) trains the two adapters for every
cell of

    training-set size (a fraction of the training *images*, all their captions)
    x mixup alpha (0 = off, 1 = the reference's)
    x seed (initialisation, shuffling, mixup draws and which images a subset holds),

selects each run's adapters on the validation split (``eval.select_metric``, never test) and
evaluates the selected adapters once on the full test split. Reported per cell: mean +- std over
seeds of image->text and text->image recall@1/5/10 and rsum, the chance level of the test split,
and the paired difference mixup - no mixup (same seed = same subset, same initialisation), so
the effect of mixup is read against seed noise.

Equal optimisation budget. Every run takes the same number of optimiser steps (``--steps``),
whatever the data-set size: the batch is capped so that an epoch has at least
``--min-steps-per-epoch`` steps, and the number of epochs is the step budget over the steps per
epoch. Smaller sets are therefore seen for more epochs, which is where mixup's regularisation
should matter. With ``mixup_mode: permutation`` (the shipped default) the contrastive batch is
the same with and without mixup, so alpha is the only difference between the paired runs.

Runs go to a process pool (``--workers``, default 2) with one torch thread per process; the data
set is read from the store by each run (a few MB). Prints the tables and writes
``bench/results/fusemix_scenes.json`` atomically (machine, load average, command, settings,
per-run and per-cell metrics, wall time).

    python bench/bench_fusemix_scenes.py                      # the full measurement (figures: bench/README.md)
    python bench/bench_fusemix_scenes.py --quick --data source.scenes.num_scenes=60 --out /tmp/s.json
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # 1-thread workers must not spin on shared cores

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "fusemix_scenes.json"
RECIPE_CONFIG = REPO / "configs" / "fusemix" / "scenes.yaml"
# The FuseMix job's data set (image and caption latents only), with the whole image encoded at
# 224 px (EfficientNet-Lite0's training size) instead of the scenes' own 128 px: a 7x7 instead of a
# 4x4 final feature map, for 3x the image-encoding time. Chosen on validation during development
# (a small comparison, not one of the recorded benchmarks).
DATASET_OVERRIDES = ("tables=[pairs]", "image.image_size=224")
KS = (1, 5, 10)
METRICS = tuple(f"{d}_r{k}" for d in ("i2t", "t2i") for k in KS) + ("rsum",)
QUICK_RECIPE = (  # seconds, not minutes: a tiny adapter on a tiny data set
    "model.out_dim=64", "model.x={depth: 1, width_factor: 0.25, dropout: 0.1}",
    "model.y={depth: 1, width_factor: 0.5, dropout: 0.1}", "optim.lr=2.0e-3", "optim.warmup_steps=4",
)


@dataclass(frozen=True)
class Cell:
    """One training run: data-set fraction, mixup alpha and seed."""

    fraction: float
    alpha: float
    seed: int


# -- data ----------------------------------------------------------------------------------------


def build_dataset(overrides: list[str], backend: str | None) -> str:
    """Root of the precomputed data set (built on first use, then reused from the cache)."""
    from mmsearch.orchestration.precompute import ensure_dataset

    return ensure_dataset(None, [*DATASET_OVERRIDES, *overrides], backend=backend)


def load_split(root: str, split: str) -> dict[str, Any]:
    """The split's ``pairs`` table as tensors: image [n, Dx], text [n, Dy], image_id int64 [n]."""
    import torch

    from mmsearch.data.dataset_root import DatasetRoot
    from mmsearch.data.store import open_store

    columns = open_store(DatasetRoot(root).split_uri(split)).table("pairs").read_all(["image_id", "image", "text"])
    numbering: dict[str, int] = {}
    ids = [numbering.setdefault(i, len(numbering)) for i in columns["image_id"]]
    return {"image": torch.from_numpy(columns["image"]), "text": torch.from_numpy(columns["text"]),
            "image_id": torch.tensor(ids, dtype=torch.long)}


def image_subset(split: dict[str, Any], fraction: float, seed: int) -> dict[str, Any]:
    """Rows of a random ``fraction`` of the split's images (all captions of each), drawn by ``seed``."""
    import torch

    images = torch.unique(split["image_id"])
    keep = max(2, round(fraction * len(images)))
    if keep >= len(images):
        return split
    chosen = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:keep]]
    rows = torch.isin(split["image_id"], chosen)
    return {name: values[rows] for name, values in split.items()}


def schedule(pairs: int, batch_size: int, steps: int, min_steps_per_epoch: int) -> tuple[int, int]:
    """(batch size, epochs) giving about ``steps`` optimiser steps with >= ``min_steps_per_epoch`` per epoch."""
    batch = max(2, min(batch_size, pairs // min_steps_per_epoch))
    per_epoch = pairs // batch  # drop_last
    return batch, max(1, math.ceil(steps / per_epoch))


def chance_level(root: str) -> dict[str, float]:
    from mmsearch.metrics.retrieval import chance_recall

    test = load_split(root, "test")
    ids = test["image_id"]
    chance = chance_recall(int(ids.max()) + 1, len(ids), ids, KS)
    chance["rsum"] = sum(chance[m] for m in METRICS[:-1])
    return chance


# -- one run (in a pool process) -------------------------------------------------------------------


class _MemoryContext:
    """A RunContext that keeps the reports in memory (no checkpoints kept: runs are not resumed)."""

    rank, world_size = 0, 1

    def __init__(self, output_dir: Path) -> None:
        self._output_dir = output_dir
        self.history: list[dict[str, Any]] = []

    @property
    def output_dir(self) -> Path:
        return self._output_dir

    def restored_checkpoint(self) -> None:
        return None

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        self.history.append(dict(metrics))


def run_cell(root: str, cell: Cell, recipe_overrides: list[str], steps: int, min_steps_per_epoch: int) -> dict[str, Any]:
    """Train one cell with the FuseMix recipe; returns its selected-on-val test metrics and timings."""
    import torch

    from mmsearch.config import load_config
    from mmsearch.data.dataset_root import DatasetRoot
    from mmsearch.recipes.fusemix.recipe import train_fusemix
    from mmsearch.recipes.fusemix.config import FuseMixConfig
    from mmsearch.recipes.fusemix.data import tensor_stream_factory

    torch.set_num_threads(1)
    start = time.perf_counter()
    splits = {split: load_split(root, split) for split in ("train", "val", "test")}
    splits["train"] = image_subset(splits["train"], cell.fraction, cell.seed)
    base = load_config(FuseMixConfig, RECIPE_CONFIG, recipe_overrides)
    pairs = len(splits["train"]["image_id"])
    batch, epochs = schedule(pairs, base.train.batch_size, steps, min_steps_per_epoch)
    dataset = DatasetRoot(root)
    cfg = load_config(FuseMixConfig, RECIPE_CONFIG, [
        *recipe_overrides,
        *(f"data.{key}={dataset.split_uri(split)}" for split, key in
          (("train", "store"), ("val", "val_store"), ("test", "test_store"))),
        f"loss.mixup_alpha={cell.alpha}", f"train.seed={cell.seed}", f"train.batch_size={batch}",
        f"train.epochs={epochs}", "train.num_threads=1", "train.device=cpu",
    ])
    with tempfile.TemporaryDirectory(prefix="fusemix-scenes-") as scratch:
        context = _MemoryContext(Path(scratch))
        final = train_fusemix(cfg, context, stream_factory=tensor_stream_factory(splits))
    history = context.history
    train_s = sum(h["train_s"] for h in history)
    return {
        "fraction": cell.fraction, "alpha": cell.alpha, "seed": cell.seed,
        "train_images": int(torch.unique(splits["train"]["image_id"]).numel()), "train_pairs": pairs,
        "batch_size": batch, "epochs": epochs, "steps": int(history[-1]["step"]),
        "best_epoch": int(final["best_epoch"]),
        "val": {m: history[final["best_epoch"] - 1][f"val_{m}"] for m in METRICS},
        "test": {m: final[f"test_{m}"] for m in METRICS},
        "final_loss": history[-1]["loss"], "temperature": history[-1]["temperature"],
        "train_s": train_s, "eval_s": sum(h["eval_s"] for h in history),
        "pairs_per_s": int(history[-1]["step"]) * batch / train_s,  # input pairs trained on per training second
        # rows that went through the adapters and the loss (after mixup), as the recipe counted them
        "loss_rows": round(sum(h["mixed_pairs_per_s"] * h["train_s"] for h in history)),
        "data_wait_s": sum(h["data_wait_s"] for h in history),
        "wall_s": time.perf_counter() - start,
    }


# -- summary ------------------------------------------------------------------------------------


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (fraction, alpha): mean/std of test metrics; per fraction: paired mixup - no-mixup deltas."""
    cells = []
    for fraction in sorted({r["fraction"] for r in runs}, reverse=True):
        at = [r for r in runs if r["fraction"] == fraction]
        by_alpha = {a: {r["seed"]: r for r in at if r["alpha"] == a} for a in sorted({r["alpha"] for r in at})}
        for alpha, seeds in by_alpha.items():
            rows = list(seeds.values())
            cell = {
                "fraction": fraction, "alpha": alpha,
                "train_images": _mean_std([r["train_images"] for r in rows])["mean"],
                "train_pairs": _mean_std([r["train_pairs"] for r in rows])["mean"],
                "batch_size": rows[0]["batch_size"], "epochs": rows[0]["epochs"],
                "best_epoch": _mean_std([r["best_epoch"] for r in rows]),
                "test": {m: _mean_std([r["test"][m] for r in rows]) for m in METRICS},
                "val": {m: _mean_std([r["val"][m] for r in rows]) for m in METRICS},
            }
            if alpha != 0 and 0.0 in by_alpha:
                paired = sorted(set(seeds) & set(by_alpha[0.0]))
                deltas = {m: [seeds[s]["test"][m] - by_alpha[0.0][s]["test"][m] for s in paired] for m in METRICS}
                cell["delta_vs_no_mixup"] = {m: _mean_std(v) for m, v in deltas.items()} if paired else {}
                cell["mixup_wins"] = sum(d > 0 for d in deltas["rsum"])
            cells.append(cell)
    return cells


def print_tables(cells: list[dict[str, Any]], chance: dict[str, float]) -> None:
    head = f"{'train images':>12} {'pairs':>6} {'alpha':>5} " + " ".join(f"{m:>12}" for m in METRICS)
    print("\ntest recall (%), mean +- std over seeds; selected on val")
    print(head)
    print(f"{'chance':>12} {'':>6} {'':>5} " + " ".join(f"{chance[m]:>12.2f}" for m in METRICS))
    for c in cells:
        values = " ".join(f"{c['test'][m]['mean']:>6.1f}+-{c['test'][m]['std']:<4.1f}" for m in METRICS)
        print(f"{c['train_images']:>12.0f} {c['train_pairs']:>6.0f} {c['alpha']:>5g} {values}")
    print("\npaired difference mixup - no mixup (same seeds), test recall points")
    for c in cells:
        if c.get("delta_vs_no_mixup"):
            d = c["delta_vs_no_mixup"]
            values = " ".join(f"{d[m]['mean']:>+6.1f}+-{d[m]['std']:<4.1f}" for m in METRICS)
            print(f"{c['train_images']:>12.0f} {c['train_pairs']:>6.0f} {c['alpha']:>5g} {values}  "
                  f"(mixup better in {c['mixup_wins']}/{d['rsum']['n']} seeds)")


# -- driver --------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import torch

    from mmsearch.machine import cpu_model

    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.2, 0.1], help="fractions of the training images")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 1.0], help="mixup alphas (0 = off)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=400,
                        help="optimiser steps per run, whatever the data size (400 = the config's 40 epochs of the full set)")
    parser.add_argument("--min-steps-per-epoch", type=int, default=4, help="caps the batch size on small data")
    parser.add_argument("--workers", type=int, default=2, help="pool processes, one torch thread each")
    parser.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                        help="data set override (PrecomputeConfig), e.g. source.scenes.num_scenes=60")
    parser.add_argument("--set", dest="recipe", action="append", default=[], metavar="KEY=VALUE",
                        help=f"recipe override on {RECIPE_CONFIG.relative_to(REPO)}, e.g. model.out_dim=128")
    parser.add_argument("--backend", choices=("local", "ray"), default="local", help="precompute backend (first use only)")
    parser.add_argument("--quick", action="store_true", help="1 seed, 60 steps, a tiny adapter: checks the script works")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.recipe = args.seeds[:1], 60, [*QUICK_RECIPE, *args.recipe]
    if any(not 0 < f <= 1 for f in args.fractions) or any(a < 0 for a in args.alphas):
        parser.error("fractions must be in (0, 1] and alphas >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from mmsearch.io import atomic_write_json
    from mmsearch.machine import Provenance

    provenance = Provenance(__file__, argv)
    start = time.perf_counter()
    load_at_start = os.getloadavg()
    root = build_dataset(args.data, args.backend)
    data_s = time.perf_counter() - start
    chance = chance_level(root)
    cells = [Cell(f, a, s) for f in args.fractions for s in args.seeds for a in args.alphas]
    print(f"data set {root} ready in {data_s:.1f} s; {len(cells)} runs on {args.workers} workers", flush=True)
    runs = []
    train_start = time.perf_counter()
    # spawn: fresh interpreters (no inherited OpenMP / Ray state from this process)
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_cell, root, c, args.recipe, args.steps, args.min_steps_per_epoch) for c in cells]
        for future in futures:
            run = future.result()
            runs.append(run)
            print(f"  fraction {run['fraction']:g} alpha {run['alpha']:g} seed {run['seed']}: val rsum "
                  f"{run['val']['rsum']:.1f} at epoch {run['best_epoch']}/{run['epochs']} "
                  f"({run['pairs_per_s']:.0f} pairs/s, {run['wall_s']:.0f} s)", flush=True)
    train_s = time.perf_counter() - train_start
    summary = summarize(runs)
    print_tables(summary, chance)
    wall = time.perf_counter() - start
    report = {
        "benchmark": "fusemix_scenes",
        "quick": args.quick,
        "command": provenance.command,
        "machine": {**machine(), "load_average_at_start": [round(x, 2) for x in load_at_start],
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"recipe_config": str(RECIPE_CONFIG.relative_to(REPO)), "recipe_overrides": args.recipe,
                     "dataset_overrides": [*DATASET_OVERRIDES, *args.data], "fractions": args.fractions,
                     "alphas": args.alphas, "seeds": args.seeds, "steps": args.steps,
                     "min_steps_per_epoch": args.min_steps_per_epoch, "workers": args.workers,
                     "threads_per_worker": 1},
        "dataset": {"root": root, **_dataset_card(root)},
        "chance": chance,
        "cells": summary,
        "runs": runs,
        "wall_s": {"total": wall, "dataset": data_s, "training": train_s},
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "provenance": provenance.block(),
    }
    atomic_write_json(args.out, report)
    print(f"\n{len(runs)} runs in {train_s:.0f} s (total {wall:.0f} s); wrote {args.out}")
    return 0


def _dataset_card(root: str) -> dict[str, Any]:
    from mmsearch.data.dataset_root import DatasetRoot

    card = DatasetRoot(root).read_card()
    return {"fingerprint": card.fingerprint, "encoders": card.encoders, "splits": card.splits}


if __name__ == "__main__":
    raise SystemExit(main())
