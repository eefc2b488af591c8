"""Everything this project runs on a GPU, checked in one go on a machine that has one (< 10 minutes).

    python bench/gpu_check.py                   # writes bench/results/gpu_check.json
    python bench/gpu_check.py --only fusemix    # one step (smoke_search, train_ddp, zero2_bf16,
                                                # bench_train_derived, fusemix)
    python bench/gpu_check.py --synthetic-data  # the smoke search on generated data (no encoders there)

Steps, each in its own process with a time limit, each recorded with its exit status, wall time
and the figures it produced:

1. ``smoke_search``: ``jobs/search_vqa.py --smoke-test`` with two trials and no resource flags: the
   job must share the GPU between the trials by default (its plan says "Trials on GPU ... bf16
   autocast") and the trials must really run on it (the recipe's log line "cuda, bf16 autocast").
2. ``train_ddp``: ``jobs/train_derived.py --smoke-test --gpu --workers 1`` (Ray Train, DDP on NCCL).
3. ``zero2_bf16``: the same under DeepSpeed ZeRO-2 in bf16 (``configs/deepspeed/zero2_bf16.json``).
4. ``bench_train_derived``: ``bench/bench_train_derived.py --gpu`` (samples/s at the MMnas training
   size and the fraction of the measured bf16 matmul peak).
5. ``fusemix``: the FuseMix training step at the reference size (image 1536-d, text 1024-d, 4 blocks
   x4, 512-d out) under bf16 autocast, batch 8192 and 32768: input pairs/s, and achieved TFLOP/s
   (the analytic count of bench_fusemix_step.py) as a fraction of the bf16 matmul peak.

Without a CUDA GPU it stops at once with exit status 2 and writes nothing. Exit status 1 when a
step failed (the JSON says which and ends with its output), 0 when all passed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "gpu_check.json"
NO_GPU_EXIT, FAILED_EXIT = 2, 1
FUSEMIX_BATCHES = (8192, 32768)


def job_steps(py: str, work: Path, *, synthetic_data: bool = False) -> dict[str, tuple[list[str], int]]:
    """The subprocess steps: name -> (command, time limit in seconds). ``synthetic_data``: the smoke
    search on generated data instead of the embedded scenes, whose first use builds the data set
    with the frozen encoders (for a machine without the encoder packages; the trials' GPU path is
    the same)."""
    storage = str(work / "runs")
    train = [py, "jobs/train_derived.py", "--config", "configs/train/vqa.yaml", "--smoke-test", "--gpu", "--workers", "1",
             "--storage", storage]
    return {
        "smoke_search": ([py, "jobs/search_vqa.py", "--smoke-test", "--storage", storage, "--name", "gpu-check-search",
                          "tune.num_samples=2", *(["recipe.data.root=synthetic"] if synthetic_data else [])], 180),
        "train_ddp": ([*train, "--name", "gpu-check-ddp"], 120),
        "zero2_bf16": ([*train, "--name", "gpu-check-zero2", "--deepspeed", "configs/deepspeed/zero2_bf16.json"], 120),
        "bench_train_derived": ([py, "bench/bench_train_derived.py", "--gpu", "--out", str(work / "train_derived_gpu.json")], 120),
    }


def gpu_or_none() -> str | None:
    """The GPU's name, or None where torch sees no CUDA device."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def run_step(cmd: list[str], limit_s: int, env: dict[str, str]) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit_s)
        rc, text = out.returncode, out.stdout + out.stderr
    except subprocess.TimeoutExpired as err:
        parts = [p.decode(errors="replace") if isinstance(p, bytes) else (p or "") for p in (err.stdout, err.stderr)]
        rc, text = 124, "".join(parts) + f"\n(timed out after {limit_s} s)"
    return {"command": " ".join(cmd[1:]), "rc": rc, "ok": rc == 0, "wall_s": round(time.perf_counter() - start, 1),
            "output_tail": text[-3000:] if rc else text[-600:], "_text": text}


def smoke_search_checks(text: str, results: list[dict[str, Any]]) -> dict[str, bool]:
    """What the smoke search must show: its plan a GPU share by default, and its trials'
    ``device.json`` (``results``) that they trained on the GPU in bf16."""
    return {"plan_says_gpu": "Trials on GPU" in text and "bf16 autocast" in text,
            "trial_ran_on_cuda": bool(results) and all(r.get("ran_on", "").startswith("cuda") and "bf16" in r["ran_on"]
                                                       for r in results)}


def search_results(experiment: Path) -> list[dict[str, Any]]:
    """The ``device.json`` of every trial of the experiment (where it trained, written at its start)."""
    return [json.loads(p.read_text()) for p in sorted(experiment.glob("*/device.json"))]


def fusemix_on_gpu(batches: tuple[int, ...] = FUSEMIX_BATCHES, steps: int = 10) -> dict[str, Any]:
    """The recipe's FuseMix step at the reference size under bf16 autocast; rate vs the bf16 matmul peak."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_fusemix_step import IMAGE_DIM, OUT_DIM, TEXT_DIM, step_flops
    from bench_train_derived import peak_matmul_tflops

    from mmsearch.adapters import FuseMixModel
    from mmsearch.config import load_config
    from mmsearch.recipes.fusemix.recipe import fusemix_step
    from mmsearch.recipes.fusemix.config import FuseMixLossConfig, FuseMixOptimConfig
    from mmsearch.recipes.fusemix.optim import build_optimizer

    device = torch.device("cuda")
    peak = peak_matmul_tflops(device, torch.bfloat16, size=8192, seconds=3.0)
    rows = []
    for batch in batches:
        torch.manual_seed(0)
        model = FuseMixModel(IMAGE_DIM, TEXT_DIM, out_dim=OUT_DIM).to(device)
        opt = build_optimizer(model, load_config(FuseMixOptimConfig, {}), device)
        loss_cfg = load_config(FuseMixLossConfig, {"mixup_alpha": 1.0, "mixup_mode": "permutation"})
        rng = np.random.default_rng(0)
        x, y = torch.randn(batch, IMAGE_DIM, device=device), torch.randn(batch, TEXT_DIM, device=device)
        times, in_loss, loss = [], 0, float("nan")
        for i in range(3 + steps):
            torch.cuda.synchronize(device)
            start = time.perf_counter()
            loss, in_loss = fusemix_step(model, opt, x, y, loss_cfg=loss_cfg, rng=rng, amp=True)  # .item() syncs
            if i >= 3:
                times.append(time.perf_counter() - start)
        step_s = statistics.median(times)
        tflops = step_flops(model, in_loss) / step_s / 1e12
        rows.append({"batch": batch, "step_s_median": step_s, "input_pairs_per_s": batch / step_s,
                     "achieved_tflops": tflops, "fraction_of_bf16_peak": tflops / peak, "last_loss": loss,
                     "max_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30})
        del model, opt, x, y
        torch.cuda.empty_cache()
    return {"peak_bf16_matmul_tflops": peak, "precision": "bf16 autocast (loss fp32)", "steps_timed": steps, "rows": rows}


def main(argv: list[str] | None = None, *, gpu_name: Callable[[], str | None] = gpu_or_none) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", nargs="+", choices=["smoke_search", "train_ddp", "zero2_bf16", "bench_train_derived", "fusemix"])
    parser.add_argument("--synthetic-data", action="store_true",
                        help="the smoke search on generated data (no data set build: for a machine without the encoder packages)")
    args = parser.parse_args(argv)
    name = gpu_name()
    if name is None:
        print("error: no CUDA GPU visible here (torch.cuda.is_available() is False); bench/gpu_check.py checks the GPU "
              "paths and must run on a machine with a GPU and a CUDA build of torch. Nothing was written.",
              file=sys.stderr, flush=True)
        return NO_GPU_EXIT

    import torch

    from mmsearch.io import atomic_write_json

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "RAY_DEDUP_LOGS": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    env.setdefault("RAY_AUTH_MODE", "disabled")
    report: dict[str, Any] = {
        "machine": {"gpu": name, "gpus": torch.cuda.device_count(), "bf16": torch.cuda.is_bf16_supported(),
                    "cuda": torch.version.cuda, "torch": torch.__version__, "python": platform.python_version(),
                    "cores": os.cpu_count()},
        "steps": {},
    }
    wanted = set(args.only or ["smoke_search", "train_ddp", "zero2_bf16", "bench_train_derived", "fusemix"])
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(tmp)
        report["synthetic_data"] = args.synthetic_data
        for step, (cmd, limit) in job_steps(sys.executable, work, synthetic_data=args.synthetic_data).items():
            if step not in wanted:
                continue
            print(f"[gpu_check] {step}: {' '.join(cmd[1:])}", flush=True)
            result = run_step(cmd, limit, env)
            text = result.pop("_text")
            if step == "smoke_search":
                result["checks"] = smoke_search_checks(text, search_results(work / "runs" / "gpu-check-search"))
                result["ok"] = result["ok"] and all(result["checks"].values())
            if step == "bench_train_derived" and result["rc"] == 0:
                result["figures"] = json.loads((work / "train_derived_gpu.json").read_text()).get("gpu")
            report["steps"][step] = result
            print(f"[gpu_check] {step}: {'ok' if result['ok'] else 'FAILED'} ({result['wall_s']} s)", flush=True)
        if "fusemix" in wanted:
            start = time.perf_counter()
            try:
                report["steps"]["fusemix"] = {"ok": True, **fusemix_on_gpu()}
            except Exception as err:  # noqa: BLE001  (recorded; the other steps' figures are still written)
                report["steps"]["fusemix"] = {"ok": False, "error": f"{type(err).__name__}: {err}"}
            report["steps"]["fusemix"]["wall_s"] = round(time.perf_counter() - start, 1)
    report["all_ok"] = all(s["ok"] for s in report["steps"].values())
    atomic_write_json(args.out, report)
    print(f"[gpu_check] {'all passed' if report['all_ok'] else 'some steps FAILED'}; results: {args.out}", flush=True)
    return 0 if report["all_ok"] else FAILED_EXIT


if __name__ == "__main__":
    sys.exit(main())
