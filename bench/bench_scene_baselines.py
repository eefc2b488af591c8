"""Is the embedded scenes data a real benchmark? Text-only, image-only and fused baselines.

For VQA, ITM and VG on the default embedded data set (``configs/data/scenes.yaml``, built on
first use by ``ensure_dataset`` and cached), three baselines (:mod:`mmsearch.baselines`) are
trained with one budget (:class:`mmsearch.baselines.training.TrainBudget`): on ``train``,
selected on ``val`` by the task's primary metric, reported on ``test``:

* ``text_only``: token embedding + LSTM + attentional pooling; never sees the image;
* ``image_only``: region features + normalised boxes + attentional pooling; never sees the text;
* ``mcan``: a 2-layer MCAN (encoder SA+FFN, decoder SA+GA+FFN) with the project's front end
  and task heads.

Next to them, model-free references: the train-majority answer (VQA), chance recall and 50%
pairwise accuracy (ITM), and picking a random region (VG). The jobs (baseline x task) run in a
pool of ``--workers`` processes (spawned), one torch thread each.

    python bench/bench_scene_baselines.py                 # the full benchmark (~15 min on 2 quiet cores)
    python bench/bench_scene_baselines.py --quick         # tiny data set and budget: checks that it works

Writes ``bench/results/scene_baselines.json`` (atomically; ``--out``) with the machine, the
command, the settings, every metric, per-epoch histories and the wall time, and prints the
tables as Markdown.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from mmsearch.machine import Provenance, cpu_model

RESULTS = Path(__file__).resolve().parent / "results"
TASKS = ("vqa", "itm", "vg")
BASELINE_NAMES = ("text_only", "image_only", "mcan")
REFERENCE = "reference"  # the model-free row of each task
# Full-run job order, longest first, so that the pool's two workers finish together.
_COST = {("mcan", "itm"): 0, ("text_only", "itm"): 1, ("image_only", "itm"): 2, ("mcan", "vqa"): 3, ("mcan", "vg"): 4}
QUICK_SCENES = ["source.scenes.num_scenes=24"]  # --quick without --root: a tiny data set (local backend)


def machine() -> dict[str, Any]:
    import torch

    cpu = cpu_model()
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset: active)")}


def run_job(root: str, name: str, task: str, widths: dict[str, Any], budget: dict[str, Any]) -> dict[str, Any]:
    """One (baseline or reference) x task, in a worker process with one torch thread."""
    import torch

    torch.set_num_threads(1)
    from mmsearch.baselines import Widths
    from mmsearch.baselines.evaluation import chance_levels
    from mmsearch.baselines.training import TrainBudget, eval_batches, run_baseline
    from mmsearch.data.tasks import open_task_data
    from mmsearch.data.task_data import TaskDataConfig

    started = time.perf_counter()
    data = open_task_data(TaskDataConfig(root=root, task=task))
    settings = TrainBudget(**budget)
    if name == REFERENCE:
        train = data.batches("train", batch_size=settings.eval_batch_size, shuffle=False) if task == "vqa" else None
        test = chance_levels(task, eval_batches(data, "test", settings), train, settings.itm_test_images)
        return {"name": name, "task": task, "test": test, "seconds": {"total": time.perf_counter() - started}}
    log = lambda line: print(line, flush=True)  # noqa: E731
    return run_baseline(name, data, Widths(**widths), settings, log=log).to_dict()


def jobs_for(tasks: list[str], baselines: list[str]) -> list[tuple[str, str]]:
    jobs = [(name, task) for task in tasks for name in baselines] + [(REFERENCE, task) for task in tasks]
    return sorted(jobs, key=lambda job: _COST.get(job, 10 if job[0] == REFERENCE else 5))


def run_jobs(root: str, jobs: list[tuple[str, str]], widths: dict[str, Any], budget: dict[str, Any], workers: int) -> list[dict[str, Any]]:
    if workers == 1:
        return [run_job(root, name, task, widths, budget) for name, task in jobs]
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(run_job, root, name, task, widths, budget) for name, task in jobs]
        return [f.result() for f in futures]


# --- tables ----------------------------------------------------------------------------------

LABELS = {"text_only": "text only", "image_only": "image only", "mcan": "fused: MCAN-small"}
REFERENCE_LABELS = {"vqa": "majority answer (train)", "itm": "chance", "vg": "random region"}
COLUMNS = {
    "vqa": [("overall", "vqa_acc"), ("yes/no", "vqa_acc_yes_no"), ("number", "vqa_acc_number"), ("other", "vqa_acc_other"),
            ("exist", "vqa_acc_family_exist"), ("count", "vqa_acc_family_count"), ("attribute", "vqa_acc_family_attribute"),
            ("compare", "vqa_acc_family_compare"), ("relation", "vqa_acc_family_relation")],
    "itm": [("i2t R@1", "itm_i2t_r1"), ("i2t R@5", "itm_i2t_r5"), ("i2t R@10", "itm_i2t_r10"), ("t2i R@1", "itm_t2i_r1"),
            ("t2i R@5", "itm_t2i_r5"), ("t2i R@10", "itm_t2i_r10"), ("pos > hard neg", "itm_pair_acc")],
    "vg": [("acc@0.5", "vg_acc"), ("attribute", "vg_acc_family_attribute"), ("relation", "vg_acc_family_relation"),
           ("spatial", "vg_acc_family_spatial"), ("mean IoU", "vg_miou")],
}
TITLES = {"vqa": "VQA accuracy (%), by answer type and question family",
          "itm": "ITM retrieval recall (%, 5 captions per image) and positive-vs-own-hard-negative accuracy (%)",
          "vg": "VG accuracy at IoU >= 0.5 (%), by expression family"}


def markdown_tables(results: dict[str, dict[str, Any]]) -> str:
    """One Markdown table per task: the reference row, then the baselines (test split)."""
    parts = []
    for task, rows in results.items():
        columns = COLUMNS[task]
        lines = [f"**{TITLES[task]}**", "", "| model | " + " | ".join(c for c, _ in columns) + " | best epoch |",
                 "|---|" + "---:|" * (len(columns) + 1)]
        for name in (REFERENCE, *BASELINE_NAMES, *sorted(set(rows) - {REFERENCE, *BASELINE_NAMES})):
            if name not in rows:
                continue
            test = rows[name]["test"]
            label = REFERENCE_LABELS[task] if name == REFERENCE else LABELS.get(name, name)
            cells = [("-" if key not in test else f"{test[key]:.1f}") for _, key in columns]
            epoch = "-" if name == REFERENCE else str(rows[name]["best_epoch"])
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {epoch} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny data set (unless --root), widths and budget: checks that it works")
    parser.add_argument("--root", default=None, help="an existing precomputed data set root (default: ensure_dataset of --data-config)")
    parser.add_argument("--data-config", default=None, help="precompute config YAML (default: configs/data/scenes.yaml)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--baselines", nargs="+", default=list(BASELINE_NAMES), choices=BASELINE_NAMES)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (one torch thread each)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "scene_baselines.json")
    parser.add_argument("overrides", nargs="*", help="data set config overrides key.path=value")
    args = parser.parse_args(argv)

    from mmsearch.baselines import Widths
    from mmsearch.baselines.training import TrainBudget
    from mmsearch.config import config_to_dict
    from mmsearch.data.dataset_root import DatasetRoot
    from mmsearch.io import atomic_write_json

    provenance = Provenance(__file__, argv)
    started = time.perf_counter()
    load_before = os.getloadavg()
    root = args.root
    if root is None:
        from mmsearch.orchestration.precompute import ensure_dataset

        overrides = list(args.overrides) + (QUICK_SCENES if args.quick else [])
        root = ensure_dataset(args.data_config, overrides, backend="local" if args.quick else None)
    card = DatasetRoot(root).read_card()
    if args.quick:
        widths = Widths(hidden=32, flat_mlp=32, head_dim=16, depth=1)
        budget = TrainBudget(epochs=args.epochs or 2, batch_size=16, decay_epochs=1, eval_batch_size=64, itm_val_images=3, itm_test_images=4, seed=args.seed)
    else:
        widths = Widths()
        budget = TrainBudget(epochs=args.epochs or TrainBudget().epochs, seed=args.seed)
    jobs = jobs_for(args.tasks, args.baselines)
    print(f"{len(jobs)} jobs on {args.workers} worker(s), data set {root}", flush=True)
    data_ready = time.perf_counter()
    outputs = run_jobs(root, jobs, config_to_dict(widths), config_to_dict(budget), args.workers)
    results: dict[str, dict[str, Any]] = {task: {} for task in args.tasks}
    for out in outputs:
        results[out["task"]][out["name"]] = out
    tables = markdown_tables(results)
    wall = time.perf_counter() - started
    report = {
        "benchmark": "scene_baselines",
        "command": provenance.command,
        "machine": machine(),
        "load_avg_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
        "dataset": {"root": root, "name": card.name, "fingerprint": card.fingerprint, "splits": card.splits},
        "settings": {"quick": args.quick, "workers": args.workers, "torch_threads_per_worker": 1,
                     "widths": config_to_dict(widths), "budget": config_to_dict(budget)},
        "results": results,
        "wall_s": {"total": wall, "dataset": data_ready - started, "jobs": wall - (data_ready - started)},
        "provenance": provenance.block(),
    }
    atomic_write_json(args.out, report)
    print(tables)
    print(f"\nwall time {wall:.0f} s (jobs {wall - (data_ready - started):.0f} s); load average {load_before[0]:.1f} -> "
          f"{os.getloadavg()[0]:.1f}; wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
