"""Derived-architecture training throughput: the same training loop in one process and under Ray Train.

CPU mode (default) runs the recipe (:func:`mmsearch.recipes.train_derived.train_derived`) on
synthetic VQA data at one fixed small shape, three ways, each for the same number of epochs and
steps per epoch, one torch thread per worker:

* ``local``: the recipe in this process (``LocalContext``), no Ray;
* ``ray_1``: ``fit_derived`` with 1 Ray Train worker (Ray Data shard, Ray checkpoints);
* ``ray_2``: 2 Ray Train workers (DDP over gloo), the per-worker batch unchanged.

Shape: H=128 (4 heads of 32), encoder [SA, FFN], decoder [RSA, GA, FFN], VQA head, batch 32 per
worker, 4-9 tokens, up to 36 regions of 64-d features. Reported per run: steady-state samples/s
(epochs after the first: training time including waits for data, excluding evaluation and
checkpoints), the median step time, data wait per epoch, and the start-up cost (wall time not
spent in epochs: worker start, process group, data and model set-up, per-epoch checkpoints).
``ray_overhead_pct`` compares ``ray_1`` with ``local`` (aim: under 10%), ``scaling_2_workers``
is ``ray_2``'s throughput over twice ``ray_1``'s.

GPU mode (``--gpu``): samples/s of the training step (forward, loss, backward, clip, Adam) at
the MMnas training size (H=512, 8 heads, MMnas's VQA architecture, batch 64, 14 tokens, 100
regions of 2048-d features, 3129 answers) with bf16 autocast on one GPU, its matmul FLOPs
(torch's FLOP counter + the LSTM counted from its shape) and the achieved fraction of the GPU's
peak bf16 matmul rate, measured in the same run. Skipped (recorded as such) without CUDA.

    python bench/bench_train_derived.py            # full CPU run (on a quiet machine)
    python bench/bench_train_derived.py --quick    # tiny, to check it works
    python bench/bench_train_derived.py --gpu      # GPU mode

Writes ``bench/results/train_derived.json`` (``--gpu``: ``train_derived_gpu.json``) atomically.
"""
from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from mmsearch.io import atomic_write_json  # noqa: E402
from mmsearch.machine import Provenance, cpu_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TINY_ARCH = {"enc": [["self_att"], ["feed_forward"]], "dec": [["rel_self_att"], ["guided_att"], ["feed_forward"]],
             "source": "bench tiny (issue 3's tiny shape)"}
BATCH = 32


# --- CPU: the recipe with and without Ray Train ------------------------------------------------
def synthetic_data(train_images: int) -> functools.partial:
    """A picklable factory of the benchmark's data (Ray workers build their own copy)."""
    from mmsearch.data.synthetic import SyntheticTaskData

    return functools.partial(SyntheticTaskData, "vqa", train_images=train_images, val_images=8, test_images=8,
                             max_clutter=30, region_dim=64)


def recipe_config(epochs: int, steps: int, workers: int, out: Path, name: str) -> dict[str, Any]:
    return {
        "arch": TINY_ARCH,
        "data": {"root": "synthetic", "task": "vqa"},
        "model": {"hidden": 128, "head_dim": 32, "word_dim": 64},
        "head": {"task": "vqa", "flat_mlp_size": 128},
        "optim": {"lr": 1e-3, "lr_decay_epochs": []},
        "train": {"epochs": epochs, "batch_size": BATCH, "max_steps_per_epoch": steps, "num_threads": 1, "device": "cpu"},
        "eval": {"batch_size": 64, "every_epochs": 10**6, "test": False, "predictions": False},  # the last epoch only
        "scaling": {"num_workers": workers, "cpus_per_worker": 0.5},
        "run": {"name": name, "storage_path": str(out / "storage"), "checkpoints_to_keep": 1},
        "output_dir": str(out / name),
    }


def summarize(history: list[dict[str, Any]], wall_s: float, steps: int) -> dict[str, Any]:
    steady = history[1:] or history  # the first epoch warms up (allocator, oneDNN kernels, data iterators)
    train_s = sum(m["train_s"] for m in steady)
    steady_samples = history[-1]["samples"] - (history[0]["samples"] if len(history) > 1 else 0)  # counts are cumulative
    return {
        "samples_per_s": steady_samples / train_s,
        "step_s_median": statistics.median(m["step_s"] for m in steady),
        "data_wait_s_per_epoch": statistics.fmean(m["data_s"] for m in steady),
        "epochs": len(history),
        "steps_per_epoch": steps,
        "wall_s": wall_s,
        "startup_s": wall_s - sum(m["epoch_s"] for m in history),
        "final_train_loss": history[-1]["train_loss"],
        "world_size": history[-1]["world_size"],
    }


def run_local(epochs: int, steps: int, train_images: int, out: Path) -> dict[str, Any]:
    from mmsearch.config import load_config
    from mmsearch.recipes.context import LocalContext
    from mmsearch.recipes.train_derived.recipe import train_derived
    from mmsearch.recipes.train_derived.config import TrainDerivedConfig

    start = time.perf_counter()
    cfg = load_config(TrainDerivedConfig, recipe_config(epochs, steps, 1, out, "local"))
    context = LocalContext(out / "local")
    train_derived(cfg, context, synthetic_data(train_images)())  # sets the config's thread count for the run only
    return summarize(context.history, time.perf_counter() - start, steps)


def run_ray(workers: int, epochs: int, steps: int, train_images: int, out: Path) -> dict[str, Any]:
    from mmsearch.orchestration.train import fit_derived

    name = f"ray_{workers}"
    start = time.perf_counter()
    result = fit_derived(recipe_config(epochs, steps, workers, out, name),
                         task_data_factory=synthetic_data(train_images))
    wall = time.perf_counter() - start
    import json

    history = json.loads((Path(result.outputs) / "train_result.json").read_text())["history"]
    return summarize(history, wall, steps)


def cpu_bench(quick: bool, out: Path) -> dict[str, Any]:
    import ray

    epochs, steps = (2, 5) if quick else (4, 50)
    train_images = max(100, steps * BATCH)  # 2 samples per image: 2 workers x steps x batch samples per epoch
    runs: dict[str, Any] = {"local": run_local(epochs, steps, train_images, out)}
    print(f"local: {runs['local']['samples_per_s']:.1f} samples/s", flush=True)
    start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, object_store_memory=512 * 2**20)
    ray_init_s = time.perf_counter() - start
    try:
        for workers in (1, 2):
            runs[f"ray_{workers}"] = run_ray(workers, epochs, steps, train_images, out)
            print(f"ray_{workers}: {runs[f'ray_{workers}']['samples_per_s']:.1f} samples/s", flush=True)
    finally:
        ray.shutdown()
    local, one, two = runs["local"], runs["ray_1"], runs["ray_2"]
    return {
        "shape": {"hidden": 128, "heads": 4, "enc": ["SA", "FFN"], "dec": ["RSA", "GA", "FFN"], "batch_per_worker": BATCH,
                  "tokens": "4-9", "regions": "up to 36", "region_dim": 64, "threads_per_worker": 1},
        "runs": runs,
        "ray_init_s": ray_init_s,
        "ray_overhead_pct": 100.0 * (1.0 - one["samples_per_s"] / local["samples_per_s"]),
        "ray_step_overhead_pct": 100.0 * (one["step_s_median"] / local["step_s_median"] - 1.0),
        "ray_startup_extra_s": one["startup_s"] - local["startup_s"],
        "scaling_2_workers": two["samples_per_s"] / (2 * one["samples_per_s"]),
    }


# --- GPU: the training step at the MMnas training size ------------------------------------------
def mmnas_vqa_batch(batch: int, tokens: int, regions: int, region_dim: int, vocab: int, answers: int, device: torch.device):
    from mmsearch.batch import MultimodalBatch

    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(tokens // 2, tokens + 1, (batch,), generator=gen)
    text_mask = torch.arange(tokens)[None, :] >= lengths[:, None]
    ids = torch.randint(2, vocab, (batch, tokens), generator=gen).masked_fill(text_mask, 0)
    xy = torch.rand(batch, regions, 2, generator=gen) * 400
    wh = 20 + torch.rand(batch, regions, 2, generator=gen) * 200
    scores = torch.zeros(batch, answers)
    scores[torch.arange(batch), torch.randint(0, answers, (batch,), generator=gen)] = 1.0
    return MultimodalBatch(
        text_mask=text_mask, text_ids=ids, region_feats=torch.randn(batch, regions, region_dim, generator=gen),
        region_boxes=torch.cat([xy, xy + wh], dim=-1), region_mask=torch.zeros(batch, regions, dtype=torch.bool),
        image_size=torch.tensor([[640.0, 640.0]]).expand(batch, 2).contiguous(), targets={"answer_scores": scores},
    ).to(device)


def peak_matmul_tflops(device: torch.device, dtype: torch.dtype, size: int, seconds: float) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b)
    torch.cuda.synchronize(device)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        for _ in range(10):
            torch.mm(a, b)
        torch.cuda.synchronize(device)
        best = max(best, 10 * 2 * size**3 / (time.perf_counter() - start) / 1e12)
    return best


def training_step_rate(device: torch.device, *, precision: str, hidden: int, head_dim: int, batch: int, tokens: int,
                       regions: int, region_dim: int, vocab: int, answers: int, warmup: int, iters: int) -> dict[str, Any]:
    """Samples/s and matmul FLOPs of the recipe's training step (LocalEngine) at one shape."""
    from torch.utils.flop_counter import FlopCounterMode

    from mmsearch.config import load_config
    from mmsearch.tasks import make_objective
    from mmsearch.nas import named_spec
    from mmsearch.data.task_data import TaskInfo
    from mmsearch.recipes.train_derived.config import TrainDerivedConfig, resolve_config
    from mmsearch.recipes.train_derived.engine import LocalEngine, build_model

    info = TaskInfo(task="vqa", region_dim=region_dim, vocab_size=vocab, num_answers=answers,
                    answers=tuple(str(i) for i in range(answers)), max_regions=regions, max_tokens=tokens)
    cfg = load_config(TrainDerivedConfig, {
        "arch": named_spec("mmnas_vqa").to_dict(), "data": {"task": "vqa"},
        "model": {"hidden": hidden, "head_dim": head_dim, "word_dim": 300},
        "train": {"batch_size": batch, "precision": precision, "device": str(device)},
    })
    cfg = resolve_config(cfg, info)
    engine = LocalEngine(build_model(cfg, info), cfg, device)
    objective = make_objective(cfg.head)
    data = mmnas_vqa_batch(batch, tokens, regions, region_dim, vocab, answers, device)

    def step() -> None:
        with engine.autocast():
            loss, _ = objective.loss_from_outputs(engine.forward(data), data)
        engine.step(loss)

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    counter = FlopCounterMode(display=False)
    with counter:
        step()  # counted, and the first warm-up step
    lstm = engine.model.net.front.text_embed.lstm  # cuDNN's LSTM is not counted: forward + backward from its shape
    lstm_flops = 3 * 2 * batch * tokens * 4 * lstm.hidden_size * (lstm.input_size + lstm.hidden_size)
    flops = counter.get_total_flops() + lstm_flops
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"step_s_median": median, "samples_per_s": batch / median, "tflop_per_step": flops / 1e12,
            "achieved_tflops": flops / 1e12 / median, "params": sum(p.numel() for p in engine.model.parameters()),
            "precision": engine.description, "iters": iters}


def gpu_bench(quick: bool) -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    device = torch.device("cuda")
    if not torch.cuda.is_bf16_supported():
        return {"skipped": f"{torch.cuda.get_device_name(device)} has no bf16 support"}
    shape = {"hidden": 512, "head_dim": 64, "batch": 64, "tokens": 14, "regions": 100, "region_dim": 2048, "vocab": 20000, "answers": 3129}
    rate = training_step_rate(device, precision="bf16", warmup=2 if quick else 10, iters=5 if quick else 50, **shape)
    peak = peak_matmul_tflops(device, torch.bfloat16, size=4096 if quick else 8192, seconds=0.5 if quick else 3.0)
    return {"device": torch.cuda.get_device_name(device), "shape": {**shape, "arch": "mmnas_vqa (12 + 18 blocks)"},
            **rate, "peak_bf16_matmul_tflops": peak, "fraction_of_peak": rate["achieved_tflops"] / peak}


def machine() -> dict[str, Any]:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs x 5 steps (CPU) / a few steps (GPU), to check it works")
    parser.add_argument("--gpu", action="store_true", help="GPU mode: the training step at H=512, batch 64, bf16")
    parser.add_argument("--out", type=Path, default=None, help="results file (default: bench/results/train_derived[_gpu].json)")
    args = parser.parse_args(argv)
    provenance = Provenance(__file__, argv)
    out = args.out or RESULTS / ("train_derived_gpu.json" if args.gpu else "train_derived.json")
    report: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    if args.gpu:
        report["gpu"] = gpu_bench(args.quick)
        if "skipped" in report["gpu"]:
            print(f"GPU mode skipped: {report['gpu']['skipped']}")
        else:
            g = report["gpu"]
            print(f"{g['device']}: {g['samples_per_s']:.0f} samples/s, {g['achieved_tflops']:.1f} TFLOP/s = "
                  f"{100 * g['fraction_of_peak']:.1f}% of the measured bf16 matmul peak ({g['peak_bf16_matmul_tflops']:.0f} TFLOP/s)")
    else:
        with tempfile.TemporaryDirectory(prefix="bench-train-derived-") as scratch:
            report["cpu"] = cpu_bench(args.quick, Path(scratch))
        c = report["cpu"]
        print(f"Ray Train overhead vs the same loop without Ray: {c['ray_overhead_pct']:.1f}% (samples/s), "
              f"{c['ray_step_overhead_pct']:.1f}% (median step); start-up {c['runs']['ray_1']['startup_s']:.1f} s "
              f"(local {c['runs']['local']['startup_s']:.1f} s); 2 workers: {100 * c['scaling_2_workers']:.0f}% scaling")
    report["provenance"] = provenance.block()
    atomic_write_json(out, report)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
