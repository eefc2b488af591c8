"""Does the scenes VQA task teach an architecture to ground its answers? A fit-and-generalise check.

The architecture oracle (``bench_arch_oracle.py``) cannot rank architectures on VQA: every one of
them ends at 42-44 % val. This benchmark asks why, with architectures of the oracle's sample (MCAN,
the oracle's anchor, by default; ``--archs``, at the oracle's depths and width) trained standalone
in a few settings, each a run ``N:EPOCHS:DROPOUT[:GROUNDING]`` (``N`` training questions, that many
epochs at the full learning rate after MMnas's warm-up, no decay; ``GROUNDING`` the head's
``grounding_weight``, default 0: answers only):

* can it memorise a small training set (a bug in the model, loss or labels would stop that);
* given many epochs on the oracle's 4,000 questions, does val accuracy ever rise, or does the
  training accuracy climb alone (memorising, not learning the rule)?
* with the referents' grounding signal, does the head learn to read the referred regions
  (``val_pointing``: % of questions whose most attended region covers a referent), and does that
  lift val accuracy and tell architectures apart?

Per run and epoch: accuracy on its own training questions (running mean over the epoch's batches,
dropout on) and on val, overall and per question family, and val pointing. Runs are cells of
``mmsearch.evaluation.cells`` (resumable, in a process pool, one thread each).

    python bench/bench_vqa_fit.py --runs 256:60:0 4000:30:0.1 --workers 2   # writes bench/results/vqa_fit.json
    python bench/bench_vqa_fit.py --runs 4000:8:0.1:0 4000:8:0.1:1 --archs mcan random3 --out bench/results/vqa_grounding.json
    python bench/bench_vqa_fit.py --quick --work-dir /tmp/vf                 # tiny synthetic data (the test)
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_arch_oracle as oracle_bench  # noqa: E402  (bench/ is not a package)

REPO = oracle_bench.REPO
RESULTS = REPO / "bench" / "results" / "vqa_fit.json"
QUICK_RUNS = ("8:3:0", "16:2:0.1:1")
FAMILY_PREFIX = "val_vqa_acc_family_"


def parse_run(text: str) -> dict[str, Any]:
    """``N:EPOCHS:DROPOUT[:GROUNDING]`` -> its settings (a clear error naming the bad part)."""
    parts = text.split(":")
    try:
        if len(parts) not in (3, 4):
            raise ValueError
        n, epochs, dropout = int(parts[0]), int(parts[1]), float(parts[2])
        grounding = float(parts[3]) if len(parts) == 4 else 0.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"a run is N:EPOCHS:DROPOUT[:GROUNDING] (e.g. 256:60:0 or 4000:8:0.1:1), got {text!r}") from None
    if n < 1 or epochs < 1 or not 0.0 <= dropout < 1.0 or grounding < 0:
        raise argparse.ArgumentTypeError(f"run {text!r}: need N >= 1, EPOCHS >= 1, 0 <= DROPOUT < 1 and GROUNDING >= 0")
    return {"train_questions": n, "epochs": epochs, "dropout": dropout, "grounding": grounding}


def run_settings(base: Mapping[str, Any], run: Mapping[str, Any], quick: bool) -> dict[str, Any]:
    """The oracle's VQA training settings with this run's size, epochs and dropout, and no lr decay."""
    epochs = run["epochs"]
    return oracle_bench.deep_merge(copy.deepcopy(dict(base)), {
        "model": {"dropout": run["dropout"]},
        "head": {"grounding_weight": run["grounding"]},
        "optim": {"lr_decay_epochs": []},
        "train": {"epochs": epochs},
        "eval": {"every_epochs": 1, "test": False, "predictions": False},
        "data": {"limit": {"train": run["train_questions"], "val": 40 if quick else 800}},
    })


def cell_name(arch: str, run: Mapping[str, Any]) -> str:
    name = f"vqa_fit_n{run['train_questions']}_e{run['epochs']}_d{run['dropout']:g}"
    name += f"_g{run['grounding']:g}" if run["grounding"] else ""  # answers-only cells keep their names
    return name if arch == "mcan" else f"{name}_{arch}"


def architectures(names: list[str], depths: tuple[int, int]) -> dict[str, dict[str, Any]]:
    """The named architectures of the oracle's sample (its default size and seed) and fusion patterns."""
    from mmsearch.evaluation.sample import fusion_anchors, oracle_sample

    known = dict(oracle_sample(*depths, 34, seed=0) + fusion_anchors())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown architecture(s) {unknown}; the oracle's are {sorted(known)}")
    return {n: known[n].to_dict() for n in names}


def run_fit_cell(cell: Any, settings: Mapping[str, Any], work_dir: str) -> dict[str, Any]:
    """Train MCAN for one run; its per-epoch training and val accuracy."""
    import torch

    from mmsearch.recipes.context import LocalContext
    from mmsearch.recipes.train_derived.recipe import train_derived

    torch.set_num_threads(1)
    run = cell.params["run"]
    oracle_settings = {"synthetic": settings["synthetic"], "data_root": settings["data_root"],
                       "train": {"vqa": run_settings(settings["train"], run, settings["quick"])}}
    out = Path(work_dir) / "runs" / cell.name
    cfg = oracle_bench.train_config(oracle_settings, "vqa", settings["archs"][cell.params["arch"]], settings["seed"], out)
    data = oracle_bench.task_data(oracle_settings, cfg.data)
    cpu = time.process_time()
    result = train_derived(cfg, LocalContext(out, keep_checkpoints=1), data)
    epochs = [{"epoch": m["epoch"], "train_acc": m.get("train_vqa_acc"), "val_acc": m.get("val_metric"),
               "val_pointing": m.get("val_vqa_pointing"),
               "val_by_family": {k[len(FAMILY_PREFIX):]: v for k, v in m.items() if k.startswith(FAMILY_PREFIX)}}
              for m in result.history]
    return {"run": dict(run), "arch": cell.params["arch"], "epochs": epochs, "train_cpu_s": time.process_time() - cpu}


def summarize(run: Mapping[str, Any], epochs: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Best val epoch, final training accuracy, and the gap that says memorising vs learning."""
    best = max(epochs, key=lambda e: e["val_acc"])
    last = epochs[-1]
    return {**run, "final_train_acc": last["train_acc"], "final_val_acc": last["val_acc"],
            "best_val_acc": best["val_acc"], "best_val_epoch": best["epoch"],
            "train_minus_val_final": last["train_acc"] - last["val_acc"],
            "final_val_pointing": last.get("val_pointing"), "final_val_by_family": last.get("val_by_family", {})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=parse_run, nargs="+", default=None,
                        help="N:EPOCHS:DROPOUT[:GROUNDING] each (default 256:60:0 4000:30:0.1)")
    parser.add_argument("--archs", nargs="+", default=["mcan"], help="oracle-sample architectures (default mcan), every run each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny synthetic data and model (seconds); figures mean nothing")
    parser.add_argument("--data-root", default=None, help="precomputed scenes (default: ensure_dataset())")
    parser.add_argument("--work-dir", type=Path, default=None, help="cells (default runs/bench_vqa_fit[_quick])")
    parser.add_argument("--out", type=Path, default=None, help=f"default {RESULTS.relative_to(REPO)} (--quick: the work dir)")
    args = parser.parse_args(argv)
    runs = args.runs or [parse_run(r) for r in (QUICK_RUNS if args.quick else ("256:60:0", "4000:30:0.1"))]

    from mmsearch.evaluation.cells import Cell, run_cells
    from mmsearch.io import atomic_write_json
    from mmsearch.machine import Provenance

    provenance = Provenance(__file__, argv)
    work = args.work_dir or REPO / "runs" / ("bench_vqa_fit_quick" if args.quick else "bench_vqa_fit")
    if args.quick:
        data_root = "synthetic"
    else:
        from mmsearch.orchestration.precompute import ensure_dataset

        data_root = args.data_root or ensure_dataset()
    depths = oracle_bench.QUICK_DEPTHS if args.quick else oracle_bench.DEPTHS
    settings = {"quick": args.quick, "data_root": data_root, "seed": args.seed,
                "synthetic": oracle_bench.QUICK_DATA if args.quick else None,
                "archs": architectures(args.archs, depths),
                "train": copy.deepcopy(oracle_bench.QUICK_TRAIN if args.quick else oracle_bench.TRAIN["vqa"])}
    if args.quick:  # every step of the few training questions, so the memorising check means something
        settings["train"]["train"].pop("max_steps_per_epoch", None)
    cells = [Cell(cell_name(arch, run), {"run": run, "arch": arch}) for arch in args.archs for run in runs]
    results = run_cells(cells, run_fit_cell, settings, work, args.workers, log=lambda line: print(line, flush=True))
    table = [{"arch": c.params["arch"], **summarize(results[c.name]["run"], results[c.name]["epochs"])} for c in cells]
    out = args.out or (work / "vqa_fit.json" if args.quick else RESULTS)
    atomic_write_json(out, {"archs": args.archs, "settings": settings, "runs": table,
                            "curves": {c.name: results[c.name]["epochs"] for c in cells},
                            "train_cpu_s": sum(results[c.name]["train_cpu_s"] for c in cells),
                            "provenance": provenance.block()})
    print("arch, run (N questions, epochs, dropout, grounding): final train / final val, best val (epoch), val pointing")
    for row in table:
        pointing = "-" if row["final_val_pointing"] is None else f"{row['final_val_pointing']:5.1f}"
        print(f"  {row['arch']:<12} {row['train_questions']:>6} {row['epochs']:>3} {row['dropout']:<4g} {row['grounding']:<4g}: "
              f"{row['final_train_acc']:5.1f} / {row['final_val_acc']:5.1f}, best {row['best_val_acc']:5.1f} "
              f"({row['best_val_epoch']}), pointing {pointing}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
