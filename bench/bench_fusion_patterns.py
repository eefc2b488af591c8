"""Fusion patterns at matched size: the six survey patterns, the two fusion baselines
(feature concatenation, late-fusion ensemble), MCAN and the MMnas prior, trained with the same
budget on each task; test metric +- std over seeds, parameters, forward FLOPs per sample, robustness to a missing
modality at test time, and how much attention crosses modalities in joint blocks.

* Matched size: every model's width H is picked (:func:`mmsearch.baselines.patterns.match_width`)
  so that its parameters without the token-embedding table come within 10 % of MCAN's at the
  reference width; models that cannot get there are reported with ``matched: false``.
* Missing modality: the trained model is evaluated on the test part with the regions masked out
  (every region padding, features zero) and with the text masked out (every token padding); the
  drop from the full test metric is reported (VG without regions is meaningless and skipped).
* Fusion mass: for every joint self-attention block, the mean share of attention (real query
  tokens, all heads) on keys of the other modality (:func:`mmsearch.ops.cross_modal_mass`), on the
  first test batch; cross-attention blocks put all their mass across by construction (1.0); for
  early summation, the mean gate value (how much of the other modality's summary is added).

``--quick`` runs on generated data (:class:`mmsearch.data.synthetic.SyntheticTaskData`) with a
tiny budget: it checks that everything works, its figures mean nothing. Full figures need the
embedded scenes (``--root``, written by jobs/precompute_latents.py), >= 3 seeds and a quiet
machine. Every (task, model, seed) is a cell trained in a pool of ``--workers`` processes (one
torch thread each) and kept under ``--work-dir``: a rerun of the same settings trains only the
cells not yet finished. The cells' figures do not depend on load, so no time is taken from them;
``--step-rounds N`` times each model's training step afterwards, in this process alone, N
interleaved rounds (``bench/fusion_step_times.py``; needs a quiet machine to mean anything);
``--step-times-only`` does only that (no cell trained or read) and writes the times alone to ``--out``.

    python bench/bench_fusion_patterns.py --quick
    python bench/bench_fusion_patterns.py --root stores/scenes --seeds 0 1 2 --workers 2 --step-rounds 3
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(REPO), str(REPO / "bench")) if p not in sys.path]
RESULTS = REPO / "bench" / "results"
TASKS = ("vqa", "itm", "vg")
TOLERANCE = 0.10  # matched parameter counts: within 10 % of the reference
REFERENCE = "mcan"


def model_builders() -> dict[str, Callable[..., Any]]:
    """name -> ``build(sizes, widths)`` for every compared model."""
    from mmsearch.baselines import build_baseline
    from mmsearch.baselines.patterns import SpecModel
    from mmsearch.nas import PATTERNS, mcan_prior_spec, pattern_spec

    builders: dict[str, Callable[..., Any]] = {
        f"fusion_{p}": (lambda sizes, widths, p=p: SpecModel(pattern_spec(p), sizes, widths)) for p in PATTERNS
    }
    builders["mmnas_prior"] = lambda sizes, widths: SpecModel(mcan_prior_spec(4, 6), sizes, widths)
    for name in ("mcan", "concat", "late"):
        builders[name] = lambda sizes, widths, name=name: build_baseline(name, sizes, widths)
    return builders


def drop_modality(batch: Any, modality: str) -> Any:
    """The batch with one modality masked out entirely (all padding, zero inputs)."""
    import torch

    if modality == "image":
        mask = torch.ones_like(batch.region_mask)
        return dataclasses.replace(batch, region_mask=mask, region_feats=torch.zeros_like(batch.region_feats))
    mask = torch.ones_like(batch.text_mask)
    ids = None if batch.text_ids is None else torch.zeros_like(batch.text_ids)
    return dataclasses.replace(batch, text_mask=mask, text_ids=ids)


def fusion_mass(model: Any, batch: Any) -> list[dict[str, Any]]:
    """Per fusion block of a spec model: kind and cross-modal share (see the module docstring)."""
    import torch

    from mmsearch.nas import StreamNet
    from mmsearch.ops import cross_modal_mass, self_attention_weights

    net = getattr(model, "net", None)
    if not isinstance(net, StreamNet):
        return []
    found: list[dict[str, Any]] = []
    hooks = []
    for index, block in enumerate(net.blocks):
        if block.stream == "joint" and hasattr(block.op, "attn"):
            def joint_hook(module, args, index=index, name=block.name):
                x, x_mask, _, _, rel = args
                text_len = x.shape[1] - (rel.shape[1] if rel is not None else net_regions[0])
                weights = self_attention_weights(module, x, x_mask, rel)
                found.append({"block": index, "op": f"joint:{name}", "cross_mass": float(cross_modal_mass(weights, text_len, x_mask).mean())})
            hooks.append(block.op.register_forward_pre_hook(joint_hook))
        elif block.name == "early_sum":
            def gate_hook(module, args, output, index=index):
                text, text_mask, regions, region_mask = args[:4]
                s_r = module.region_summary(regions, region_mask)[:, None].expand_as(text)
                gate = torch.sigmoid(module.text_gate(torch.cat((text, s_r), -1)))
                found.append({"block": index, "op": "both:early_sum", "mean_gate_text": float(gate[~text_mask].mean())})
            hooks.append(block.op.register_forward_hook(gate_hook))
        elif block.name in ("co_att", "t2r_att", "guided_att"):
            found.append({"block": index, "op": f"{block.stream}:{block.name}", "cross_mass": 1.0})
    net_regions = [0]
    hooks.append(net.front.register_forward_hook(lambda m, a, streams: net_regions.__setitem__(0, streams.regions.shape[1])))
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return sorted(found, key=lambda r: r["block"])


def flops_per_sample(model: Any, batch: Any) -> float:
    """Forward FLOPs per sample (torch's FlopCounterMode: matmuls, SDPA, convolutions; elementwise
    work not counted) of one batch in eval mode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(batch)
    return counter.get_total_flops() / batch.batch_size


def open_data(task: str, root: str | None, quick: bool) -> Any:
    if root is None:
        from mmsearch.data.synthetic import SyntheticTaskData

        sizes = dict(train_images=24, val_images=6, test_images=6) if quick else {}
        return SyntheticTaskData(task, **sizes)
    from mmsearch.data.tasks import open_task_data
    from mmsearch.data.task_data import TaskDataConfig

    return open_task_data(TaskDataConfig(root=root, task=task))


@functools.cache
def _data(task: str, root: str | None, quick: bool) -> Any:
    return open_data(task, root, quick)  # once per task in each pool worker


def train_budget(quick: bool, seed: int) -> Any:
    from mmsearch.baselines.training import TrainBudget

    return (TrainBudget(epochs=1, batch_size=16, decay_epochs=0, eval_batch_size=64, itm_val_images=3, itm_test_images=4, seed=seed)
            if quick else TrainBudget(seed=seed))


def matched_model(data: Any, name: str, quick: bool) -> tuple[int, Any, int, Callable[[], Any]]:
    """MCAN's parameter count at the reference width, ``name``'s matched widths and count, and its builder."""
    from mmsearch.baselines import DataSizes, Widths
    from mmsearch.baselines.patterns import counted_parameters, match_width

    builders = model_builders()
    sizes = DataSizes.from_info(data.info)
    heads = 2 if quick else 4
    reference_hidden = 32 if quick else 128
    ref_widths = Widths(hidden=reference_hidden, flat_mlp=2 * reference_hidden, head_dim=reference_hidden // heads, depth=2)
    target = counted_parameters(builders[REFERENCE](sizes, ref_widths))
    widths, count = match_width(lambda w: builders[name](sizes, w), target, heads=heads)
    return target, widths, count, lambda: builders[name](sizes, widths)


def step_times(task: str, settings: dict[str, Any], rounds: int) -> dict[str, Any]:
    """Every model's training step on the same batches, interleaved rounds (bench/fusion_step_times.py)."""
    import itertools

    from fusion_step_times import measure_step_times
    from mmsearch.baselines.training import _objective, _training_loss

    quick = settings["quick"]
    data = _data(task, settings["root"], quick)
    budget = train_budget(quick, 0)
    warmup, steps = (1, 2) if quick else (3, 20)
    batches = list(itertools.islice(data.batches("train", batch_size=budget.batch_size, epoch=0, seed=0), warmup + steps))
    builders = {name: matched_model(data, name, quick)[3] for name in settings["models"]}
    return measure_step_times(settings["models"], lambda name: builders[name](), batches, _objective(task, budget), budget,
                              rounds=rounds, warmup=warmup, loss_fn=_training_loss)


def run_cell(cell: Any, settings: dict[str, Any], work_dir: str) -> dict[str, Any]:
    """Train one (task, model, seed) at the matched width; its test metric, robustness and fusion mass."""
    import torch

    from mmsearch.baselines.evaluation import evaluate_task
    from mmsearch.baselines.training import eval_batches, train_and_select
    from mmsearch.config import config_to_dict
    from mmsearch.tasks import primary_metric

    torch.set_num_threads(1)
    task, name, seed, quick = cell.params["task"], cell.params["model"], cell.params["seed"], settings["quick"]
    data = _data(task, settings["root"], quick)
    primary = primary_metric(task)
    target, widths, count, build = matched_model(data, name, quick)
    budget = train_budget(quick, seed)
    torch.manual_seed(seed)
    model = build()
    device = torch.device(settings["device"])
    result = train_and_select(model, data, budget, name=name, device=device)
    test_batches = eval_batches(data, "test", budget, device)
    missing = {}
    for modality in ("image", "text"):
        if task == "vg" and modality == "image":
            continue
        dropped = [drop_modality(b, modality) for b in test_batches]
        value = evaluate_task(task, model, dropped, budget.itm_test_images, getattr(model, "modality", "text+image"))[primary]
        missing[f"no_{modality}"] = {"metric": value, "drop": result.test[primary] - value}
    return {"task": task, "model": name, "seed": seed, "metric": primary, "target_parameters": target,
            "widths": config_to_dict(widths), "parameters": count, "flops_per_sample": flops_per_sample(model, test_batches[0]),
            "test": result.test[primary], "best_epoch": result.best_epoch, "missing": missing,
            "fusion": fusion_mass(model, test_batches[0]), "ran_on": device_name(device), "seconds": result.seconds}


def device_name(device: Any) -> str:
    """Where a cell trained, for the results: ``cpu`` or ``cuda: <the GPU's name>``."""
    import torch

    return f"cuda: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else device.type


def plan_cells(settings: dict[str, Any]) -> list[Any]:
    from mmsearch.evaluation.cells import Cell

    return [Cell(f"{task}_{name}_seed{seed}", {"task": task, "model": name, "seed": seed})
            for task in settings["tasks"] for seed in settings["seeds"] for name in settings["models"]]


def cell_scope(cell: Any, settings: dict[str, Any]) -> dict[str, Any]:
    return {**cell.params, "quick": settings["quick"], "root": settings["root"], "device": settings["device"]}


def task_result(task: str, settings: dict[str, Any], cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One task's table from its cells: per model the matched size and the seeds' figures."""
    out: dict[str, Any] = {"reference": REFERENCE, "models": {}}
    for name in settings["models"]:
        runs = [cells[f"{task}_{name}_seed{seed}"] for seed in settings["seeds"]]
        first = runs[0]
        out.update(target_parameters=first["target_parameters"], metric=first["metric"])
        values = [r["test"] for r in runs]
        out["models"][name] = {
            "widths": first["widths"], "parameters": first["parameters"],
            "parameter_ratio": first["parameters"] / first["target_parameters"],
            "matched": abs(first["parameters"] / first["target_parameters"] - 1) <= TOLERANCE,
            "flops_per_sample": first["flops_per_sample"],
            "seeds": {str(r["seed"]): {k: r[k] for k in ("test", "best_epoch", "missing", "fusion", "ran_on", "seconds")} for r in runs},
            "test_mean": statistics.fmean(values), "test_std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = []
    for task, res in results.items():
        lines += [f"\n{task} ({res['metric']}, reference {res['reference']}: {res['target_parameters']} parameters)\n",
                  "| model | H | parameters (ratio) | MFLOPs / sample | test +- std | drop without regions | drop without text | ms / step |",
                  "|---|---|---|---|---|---|---|---|"]
        timed = res.get("step_times", {}).get("models", {})
        for name, row in res["models"].items():
            drops = {k: statistics.fmean(s["missing"][k]["drop"] for s in row["seeds"].values()) if k in next(iter(row["seeds"].values()))["missing"] else None
                     for k in ("no_image", "no_text")}
            cells = ["-" if v is None else f"{v:.2f}" for v in drops.values()]
            lines.append(f"| {name} | {row['widths']['hidden']} | {row['parameters']} ({row['parameter_ratio']:.2f}) | "
                         f"{row['flops_per_sample'] / 1e6:.1f} | {row['test_mean']:.2f} +- {row['test_std']:.2f} | {cells[0]} | {cells[1]} | "
                         + (f"{timed[name]['wall_s'] * 1e3:.1f} |" if name in timed else "- |"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny generated data and budget: checks that it works")
    parser.add_argument("--root", default=None, help="precomputed data set root (the embedded scenes); default: generated data")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--models", nargs="+", default=None, help="subset of the compared models (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0 1 2 (--quick: 0)")
    parser.add_argument("--out", type=Path, default=RESULTS / "fusion_patterns.json")
    parser.add_argument("--workers", type=int, default=2, help="pool processes, one torch thread each (1: this process)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="where the cells train (cuda: every pool process on the one GPU, fp32; the step times stay on the CPU)")
    parser.add_argument("--step-rounds", type=int, default=0,
                        help="after the cells, time every model's training step in N interleaved rounds (0: not timed)")
    parser.add_argument("--step-times-only", action="store_true",
                        help="only time the steps (--step-rounds N): no cell is trained or read; write --out with the step times alone")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="finished cells, so a rerun resumes (default runs/bench_fusion_patterns[_quick])")
    args = parser.parse_args(argv)
    if args.step_times_only and args.step_rounds < 1:
        parser.error("--step-times-only needs --step-rounds N (N >= 1)")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda: torch sees no CUDA device here", file=sys.stderr)
            return 2
    from mmsearch.data.dataset_root import DatasetError

    for task in args.tasks if args.root is not None else ():  # a wrong root or a missing table: before any work
        try:
            _data(task, args.root, args.quick)
        except DatasetError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    from mmsearch.evaluation.cells import run_cells
    from mmsearch.io import atomic_write_json

    from mmsearch.machine import Provenance

    provenance = Provenance(__file__, argv)
    names = args.models or list(model_builders())
    unknown = sorted(set(names) - set(model_builders()))
    if unknown:
        print(f"error: unknown models {unknown}; known: {', '.join(model_builders())}", file=sys.stderr)
        return 2
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    settings = {"quick": args.quick, "root": args.root, "tasks": list(args.tasks), "models": names, "seeds": seeds,
                "device": args.device}
    if args.step_times_only:  # the step column alone: the cells' training is hours, the timing minutes
        timed = {}
        for task in args.tasks:
            print(f"timing the training step of {len(names)} models on {task}, {args.step_rounds} rounds", flush=True)
            timed[task] = step_times(task, settings, args.step_rounds)
            for name, entry in timed[task]["models"].items():
                print(f"{task} {name:28s} {entry['wall_s'] * 1e3:8.1f} ms/step", flush=True)
        atomic_write_json(args.out, {"benchmark": "fusion_step_times", "command": provenance.command,
                                     "settings": {"quick": args.quick, "root": args.root, "tasks": list(args.tasks), "models": names},
                                     "step_times": timed, "provenance": provenance.block()})
        print(f"wrote {args.out}")
        return 0
    work = args.work_dir or REPO / "runs" / ("bench_fusion_patterns_quick" if args.quick else "bench_fusion_patterns")
    cells = run_cells(plan_cells(settings), run_cell, settings, work, args.workers, log=lambda line: print(line, flush=True),
                      scope=cell_scope)
    results = {task: task_result(task, settings, cells) for task in args.tasks}
    for task in args.tasks if args.step_rounds > 0 else ():
        print(f"timing the training step of {len(names)} models on {task}, {args.step_rounds} rounds", flush=True)
        results[task]["step_times"] = step_times(task, settings, args.step_rounds)
    report = {
        "benchmark": "fusion_patterns",
        "command": provenance.command,
        "settings": {"quick": args.quick, "root": args.root, "seeds": seeds, "tolerance": TOLERANCE, "device": args.device},
        "results": results,
        "provenance": provenance.block(),
    }
    atomic_write_json(args.out, report)
    print(markdown(results))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
