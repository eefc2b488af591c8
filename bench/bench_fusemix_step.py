"""FuseMix adapter training throughput on this CPU, at the reference adapter size.

What one measurement is: the recipe's own training step (``mmsearch.recipes.fusemix.fusemix_step``:
mixup with one shared lambda -> adapters -> symmetric InfoNCE -> AdamW) on random latents, with
the reference sizes (image latent 1536-d, text 1024-d, 4 residual blocks x4 each, dropout 0.6,
512-d output, AdamW lr 1e-3 / wd 0.1 on matrices), fp32, ``--threads`` intra-op threads.

Reported per (batch, mixup mode):
  * input pairs/s (pairs consumed from the data); the ratio to the reference step comes only from
    ``bench/bench_vs_reference.py``, which runs both in one run;
  * mixed pairs/s (pairs in the contrastive loss: B with "permutation", B/2 with "halves");
  * achieved FLOP rate from an analytic count of the *useful* FLOPs of a step -- adapters
    forward + backward (6 x weight-matrix MACs x rows) and the logits (one M x M x 512 product
    forward, two backward) -- as a fraction of the fp32 matmul peak measured in the same run with
    the same threads (best of a few square sgemms). Elementwise work, the optimiser and any
    recomputation of chunked logits are not counted, so the fraction is conservative;
  * peak RSS of the process that ran that configuration (each runs in its own subprocess).

Usage:
    python bench/bench_fusemix_step.py                 # full run (B = 2048, 8192; both modes)
    python bench/bench_fusemix_step.py --quick --out /tmp/fusemix_step.json   # seconds, to verify
Writes ``bench/results/fusemix_step.json`` atomically (or ``--out``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

IMAGE_DIM, TEXT_DIM, OUT_DIM = 1536, 1024, 512
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "fusemix_step.json"


def matmul_peak_gflops(threads: int, sizes: tuple[int, ...], repeats: int) -> float:
    """Best fp32 GEMM rate (GFLOP/s) over square sizes, after one warm-up per size."""
    import torch

    torch.set_num_threads(threads)
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        out = torch.empty(n, n)
        torch.mm(a, b, out=out)
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def step_flops(model, rows_in_loss: int) -> float:
    """Useful FLOPs of one step: adapters fwd+bwd (3 x 2 x MACs) plus the logits (3 products)."""
    import torch

    macs_per_row = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    adapters = 6.0 * macs_per_row * rows_in_loss
    logits = 3 * 2.0 * rows_in_loss * rows_in_loss * model.out_dim
    return adapters + logits


def run_one(batch: int, mode: str, warmup: int, steps: int, threads: int, chunk_size: int | None, optimizer: str) -> dict:
    """Time the recipe's step for one configuration (called in a fresh subprocess)."""
    import numpy as np
    import torch

    from mmsearch.adapters import FuseMixModel
    from mmsearch.config import load_config
    from mmsearch.recipes.fusemix.recipe import fusemix_step
    from mmsearch.recipes.fusemix.config import FuseMixLossConfig, FuseMixOptimConfig
    from mmsearch.recipes.fusemix.optim import build_optimizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = FuseMixModel(IMAGE_DIM, TEXT_DIM, out_dim=OUT_DIM)  # 4 blocks x4, dropout 0.6 per side
    optim_cfg = load_config(FuseMixOptimConfig, {"implementation": optimizer})
    opt = build_optimizer(model, optim_cfg, torch.device("cpu"))
    loss_cfg = load_config(FuseMixLossConfig, {"mixup_alpha": 1.0, "mixup_mode": mode, "chunk_size": chunk_size})
    rng = np.random.default_rng(0)
    x, y = torch.randn(batch, IMAGE_DIM), torch.randn(batch, TEXT_DIM)
    times, cpu_times, rows = [], [], 0
    for i in range(warmup + steps):
        start, cpu = time.perf_counter(), time.process_time()
        loss, rows = fusemix_step(model, opt, x, y, loss_cfg=loss_cfg, rng=rng)
        if i >= warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu)
    step_s = statistics.median(times)
    flops = step_flops(model, rows)
    return {
        "batch": batch,
        "mode": mode,
        "rows_in_loss": rows,
        "optimizer": optimizer,
        "steps_timed": steps,
        "step_s_median": step_s,
        "step_s_all": times,
        "cpu_s_median": statistics.median(cpu_times),
        "input_pairs_per_s": batch / step_s,
        "mixed_pairs_per_s": rows / step_s,
        "flops_per_step": flops,
        "achieved_gflops": flops / step_s / 1e9,
        "last_loss": loss,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,  # ru_maxrss is KiB on Linux
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--modes", nargs="+", default=["permutation", "halves"], choices=["permutation", "halves"])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--optimizer", default="auto", choices=["auto", "fused", "foreach", "for-loop"])
    parser.add_argument("--chunk-size", type=int, default=None, help="logit rows per chunk (default: automatic)")
    parser.add_argument("--quick", action="store_true", help="batch 256, 1 warm-up + 1 timed step: checks the script works")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--single", nargs=2, metavar=("BATCH", "MODE"), help=argparse.SUPPRESS)  # subprocess entry
    args = parser.parse_args(argv)

    if args.single:
        result = run_one(int(args.single[0]), args.single[1], args.warmup, args.steps, args.threads, args.chunk_size,
                         args.optimizer)
        print(json.dumps(result))
        return 0

    from mmsearch.machine import Provenance, cpu_model

    provenance = Provenance(__file__, argv)
    if args.quick:
        args.batches, args.steps, args.warmup = [256], 1, 1
    peak = matmul_peak_gflops(args.threads, (1024, 2048) if args.quick else (2048, 4096), 2 if args.quick else 3)
    print(f"fp32 matmul peak with {args.threads} threads: {peak:.1f} GFLOP/s", flush=True)
    results = []
    for batch in args.batches:
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--single", str(batch), mode, "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--threads", str(args.threads), "--optimizer", args.optimizer]
            if args.chunk_size:
                cmd += ["--chunk-size", str(args.chunk_size)]
            env = {**os.environ, "PYTHONWARNINGS": "ignore"}
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise SystemExit(f"B={batch} {mode} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["fraction_of_matmul_peak"] = result["achieved_gflops"] / peak
            results.append(result)
            print(
                f"B={batch:5d} {mode:11s}: {result['step_s_median']:7.2f} s/step  "
                f"{result['input_pairs_per_s']:7.1f} input pairs/s  {result['mixed_pairs_per_s']:7.1f} mixed pairs/s  "
                f"{result['achieved_gflops']:6.1f} GFLOP/s ({100 * result['fraction_of_matmul_peak']:.0f}% of peak)  "
                f"RSS {result['peak_rss_gb']:.2f} GB",
                flush=True,
            )

    import torch

    from mmsearch.io import atomic_write_json

    report = {
        "benchmark": "fusemix_step",
        "quick": bool(args.quick),
        "machine": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "threads": args.threads,
                    "torch": torch.__version__, "python": platform.python_version()},
        "matmul_peak_gflops": peak,
        "model": {"image_dim": IMAGE_DIM, "text_dim": TEXT_DIM, "out_dim": OUT_DIM, "blocks": 4, "width_factor": 4,
                  "dropout": 0.6, "parameters": 110_440_449},
        "results": results,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "provenance": provenance.block(),
    }
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
