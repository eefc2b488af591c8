"""Training-step time of the MMnas networks: derived net, supernet weight step, supernet architecture step.

A step is everything an optimiser step costs: forward, loss, backward, grad-norm clip and Adam
(weight steps), or the strategy's architecture update (architecture steps). Shapes:

* tiny (the reference probe's): H=128, batch 8, 14 tokens (lengths 7..14), 36 regions of
  2048-d features, vocab 1000, 100 answers, VQA head with sum-reduced BCE; derived net
  encoder [SA, FFN], decoder [RSA, GA, FFN]; supernet 2 + 3 blocks over the default pools;
  and the reference's tiny supernet, H=64 with 12 + 18 blocks.
* search: H=256, batch 64, 12 + 18 blocks, 14 tokens, 100 regions, vocab 20000, 3129 answers
  (derived net = MMnas's published VQA architecture).

Reported per case: median / min / mean wall seconds per step, CPU seconds per step, samples/s,
matmul FLOPs per step (torch's FLOP counter for linear layers and batched matmuls, plus the
fused CPU attention kernel and the LSTM counted analytically) and the achieved rate as a
fraction of this machine's fp32 matmul peak, measured in the same run with the same threads;
and the kernel floor (``--floor-steps`` profiled steps after the timed ones): the seconds per step of
the matmul, LSTM and optimiser kernels alone (:data:`FLOOR_KERNELS`), what the step would take if
every other op (elementwise, layer norms, softmax, dropout masks, copies, dispatch) cost nothing.

    python bench/bench_mmnas_step.py            # full run (on a quiet machine)
    python bench/bench_mmnas_step.py --quick    # a few iterations, to check it works
    python bench/bench_mmnas_step.py --profile tiny_derived   # torch.profiler table of one case

On a machine shared with other jobs, OpenMP threads that spin-wait make small multi-threaded
steps up to 10x slower; run there with ``OMP_WAIT_POLICY=PASSIVE`` (recorded in the output).

Writes ``bench/results/mmnas_step.json`` atomically.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from mmsearch.batch import MultimodalBatch
from mmsearch.tasks import build_head, make_objective
from mmsearch.io import atomic_write_json
from mmsearch.machine import Provenance, cpu_model
from mmsearch.nas import (
    ArchSpec,
    DerivedNet,
    NetConfig,
    Supernet,
    SupernetConfig,
    arch_step,
    make_arch_optimizer,
    make_weight_optimizer,
    named_spec,
    train_step,
    weight_step,
)

RESULTS = Path(__file__).resolve().parent / "results" / "mmnas_step.json"
TINY_SPEC = ArchSpec(enc=("self_att", "feed_forward"), dec=("rel_self_att", "guided_att", "feed_forward"), source="reference tiny_arch")

# Ratios against the reference code come only from bench/bench_vs_reference.py (both in one run).


@dataclass(frozen=True)
class Case:
    mode: str  # "derived" | "weight" | "arch"
    hidden: int
    batch: int
    tokens: int
    regions: int
    vocab: int
    answers: int
    enc_depth: int = 12
    dec_depth: int = 18
    spec: str = "tiny"  # derived nets: "tiny" or a named spec
    region_dim: int = 2048
    dropout: float = 0.1
    strategy: str = "proxyless"


TINY = dict(batch=8, tokens=14, regions=36, vocab=1000, answers=100)
SEARCH = dict(hidden=256, batch=64, tokens=14, regions=100, vocab=20000, answers=3129)
CASES: dict[str, Case] = {
    "tiny_derived": Case("derived", hidden=128, **TINY),
    "tiny_supernet_weight": Case("weight", hidden=128, enc_depth=2, dec_depth=3, **TINY),
    "tiny_supernet_arch": Case("arch", hidden=128, enc_depth=2, dec_depth=3, **TINY),
    "tiny_supernet_weight_h64": Case("weight", hidden=64, **TINY),
    "tiny_supernet_arch_h64": Case("arch", hidden=64, **TINY),
    "search_derived": Case("derived", spec="mmnas_vqa", **SEARCH),
    "search_supernet_weight": Case("weight", **SEARCH),
    "search_supernet_arch": Case("arch", **SEARCH),
}


# --- inputs -------------------------------------------------------------------------------------


def make_batch(case: Case, seed: int) -> MultimodalBatch:
    """Random batch as the reference probe: text lengths T/2..T (0 = PAD), every region real,
    pixel boxes in a 480 x 640 image, sparse soft VQA targets."""
    g = torch.Generator().manual_seed(seed)
    b, t, n = case.batch, case.tokens, case.regions
    lengths = torch.randint(t // 2, t + 1, (b,), generator=g)
    text_mask = torch.arange(t)[None, :] >= lengths[:, None]
    ids = torch.randint(1, case.vocab, (b, t), generator=g).masked_fill(text_mask, 0)
    xy = torch.rand(b, n, 2, generator=g) * torch.tensor([560.0, 400.0])
    boxes = torch.cat([xy, xy + 8 + torch.rand(b, n, 2, generator=g) * 72], dim=-1)
    scores = torch.zeros(b, case.answers)
    for row in range(b):
        picks = torch.randint(0, case.answers, (3,), generator=g)
        scores[row, picks] = torch.tensor([1.0, 0.6, 0.3])
    return MultimodalBatch(
        text_mask=text_mask,
        text_ids=ids,
        region_feats=torch.rand(b, n, case.region_dim, generator=g),
        region_boxes=boxes,
        region_mask=torch.zeros(b, n, dtype=torch.bool),
        image_size=torch.tensor([[480.0, 640.0]] * b),
        targets={"answer_scores": scores},
    )


def build(case: Case) -> tuple[Callable[[MultimodalBatch], dict[str, float]], torch.nn.Module, torch.nn.Module]:
    """The step function of ``case`` (model, head and optimisers inside), plus the model and head."""
    torch.manual_seed(0)
    net = NetConfig(hidden=case.hidden, vocab_size=case.vocab, region_dim=case.region_dim, dropout=case.dropout)
    head = build_head("vqa", case.hidden, num_answers=case.answers, dropout=case.dropout)
    objective = make_objective("vqa", num_answers=case.answers).loss_from_outputs
    if case.mode == "derived":
        spec = TINY_SPEC if case.spec == "tiny" else named_spec(case.spec)
        model = DerivedNet(spec, net).train()
        opt = make_weight_optimizer(model, head)
        return (lambda batch: train_step(model, head, objective, batch, opt, clip=1.0)), model, head
    config = SupernetConfig(net=net, enc_depth=case.enc_depth, dec_depth=case.dec_depth, strategy=case.strategy)
    supernet = Supernet(config).train()
    if case.mode == "weight":
        opt = make_weight_optimizer(supernet, head)
        return (lambda batch: weight_step(supernet, head, objective, batch, opt, clip=1.0)), supernet, head
    arch_opt = make_arch_optimizer(supernet)
    return (lambda batch: arch_step(supernet, head, objective, batch, arch_opt)), supernet, head


# --- FLOPs and peak -----------------------------------------------------------------------------


def _flash_cpu_forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _flash_cpu_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


def step_flops(step: Callable, batch: MultimodalBatch, model: torch.nn.Module, case: Case) -> int:
    """Matmul FLOPs of one step (the FLOP counter sees every mm/bmm/addmm; the fused CPU attention
    kernel and the LSTM, which it does not count, are added from their shapes)."""
    aten = torch.ops.aten
    custom = {
        aten._scaled_dot_product_flash_attention_for_cpu: _flash_cpu_forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _flash_cpu_backward,
    }
    counter = FlopCounterMode(display=False, custom_mapping=custom)
    with counter:
        step(batch)
    # LSTM: per time step 2 * 4H * (D + H) FLOPs per sample forward; backward (weights and
    # inputs) twice that, except in the architecture step, which backpropagates only to the gates.
    used_tokens = int((~batch.text_mask).any(0).nonzero().max()) + 1
    lstm = model.front.text_embed.lstm
    forward = 2 * case.batch * used_tokens * 4 * lstm.hidden_size * (lstm.input_size + lstm.hidden_size)
    return counter.get_total_flops() + forward * (1 if case.mode == "arch" else 3)


def matmul_peak_gflops(seconds: float, size: int) -> float:
    """Best fp32 matmul rate (GFLOP/s) of ``size`` x ``size`` products over ~``seconds``."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        torch.mm(a, b)
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


# --- running ------------------------------------------------------------------------------------


@dataclass
class Timing:
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)


# The kernels any implementation of these steps runs, whatever its framework overhead: the matmuls
# (mm / addmm / bmm and the fused CPU attention), the LSTM's oneDNN layer and the optimiser's
# fused update. Their time per step is the step's floor in eager fp32 (every other op free).
FLOOR_KERNELS = (
    "aten::mm", "aten::addmm", "aten::bmm",
    "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
    "aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward",
    "aten::_fused_adam_",
)


def kernel_floor(step: Callable, batches: list[MultimodalBatch], steps: int) -> dict[str, Any]:
    """Per-step seconds of :data:`FLOOR_KERNELS` under torch.profiler, against all ops' self time.

    The profiler times each op on the calling thread (an op's intra-op threads included), so the
    kernels' self times add up to the wall seconds they take; the profiled total is a little above
    the unprofiled step (the profiler's own cost).
    """
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            step(batches[i % len(batches)])
    events = prof.key_averages()
    by_op = {e.key: e.self_cpu_time_total / 1e6 / steps for e in events if e.key in FLOOR_KERNELS}
    total = sum(e.self_cpu_time_total for e in events if e.key.startswith("aten::")) / 1e6 / steps
    kernels = sum(by_op.values())
    return {"kernel_s_per_step": kernels, "profiled_aten_s_per_step": total, "kernel_share": kernels / total if total else None,
            "kernels": dict(sorted(by_op.items(), key=lambda kv: -kv[1])), "steps": steps}


def time_case(case: Case, warmup: int, iters: int, floor_steps: int = 0) -> dict[str, Any]:
    step, model, head = build(case)
    batches = [make_batch(case, seed) for seed in range(4)]
    flops = step_flops(step, batches[0], model, case)  # doubles as the first warm-up step
    for i in range(1, warmup):
        step(batches[i % len(batches)])
    timing = Timing()
    for i in range(iters):
        batch = batches[i % len(batches)]
        wall, cpu = time.perf_counter(), time.process_time()
        step(batch)
        timing.wall_s.append(time.perf_counter() - wall)
        timing.cpu_s.append(time.process_time() - cpu)
    median = statistics.median(timing.wall_s)
    floor = kernel_floor(step, batches, floor_steps) if floor_steps else None
    return {
        "floor": floor,
        "settings": asdict(case),
        "params": sum(p.numel() for p in model.parameters()) + sum(p.numel() for p in head.parameters()),
        "step_s": {"median": median, "min": min(timing.wall_s), "mean": statistics.fmean(timing.wall_s)},
        "cpu_s_per_step_median": statistics.median(timing.cpu_s),
        "samples_per_s": case.batch / median,
        "gflop_per_step": flops / 1e9,
        "achieved_gflops": flops / 1e9 / median,
        "iters": iters,
        "warmup": max(warmup, 1),
    }


def machine() -> dict[str, Any]:
    cpu = cpu_model()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        # OpenMP spin-waiting collapses multi-threaded small ops on a shared machine (measured
        # here: 10x slower under load with the default "active" policy); record what was set.
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset: active)"),
    }


def profile(case_name: str, steps: int) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    case = CASES[case_name]
    step, _, _ = build(case)
    batch = make_batch(case, 0)
    for _ in range(2):
        step(batch)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step(batch)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 warm-up (FLOP-counted) + 2 timed steps per case, short peak probe")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--profile", choices=list(CASES), help="print a torch.profiler table for one case and exit")
    parser.add_argument("--floor-steps", type=int, default=5,
                        help="profiled steps per case for the kernel floor (matmul, LSTM, optimiser kernels per step); 0: skip")
    args = parser.parse_args(argv)
    if args.floor_steps < 0 or args.threads < 1 or args.iters < 1 or args.warmup < 0:
        parser.error("--floor-steps and --warmup must be >= 0, --threads and --iters >= 1")
    torch.set_num_threads(args.threads)
    if args.profile:
        profile(args.profile, steps=3 if args.quick else 10)
        return 0
    warmup, iters = (1, 2) if args.quick else (args.warmup, args.iters)
    provenance = Provenance(__file__, argv)
    load_before = os.getloadavg()
    peak = matmul_peak_gflops(seconds=0.5 if args.quick else 3.0, size=1024 if args.quick else 2048)
    results: dict[str, Any] = {}
    for name in args.cases:
        result = time_case(CASES[name], warmup, iters, floor_steps=1 if args.quick and args.floor_steps else args.floor_steps)
        result["fraction_of_peak"] = result["achieved_gflops"] / peak
        results[name] = result
        s = result["step_s"]
        print(
            f"{name:28s} median {s['median']:.4f} s  min {s['min']:.4f} s  {result['samples_per_s']:8.1f} samples/s  "
            f"{result['gflop_per_step']:8.2f} GFLOP/step  {100 * result['fraction_of_peak']:5.1f}% of peak"
            + (f"  kernel floor {result['floor']['kernel_s_per_step']:.4f} s" if result["floor"] else ""),
            flush=True,
        )
    report = {
        "benchmark": "mmnas_step",
        "command": provenance.command,
        "settings": {"threads": args.threads, "warmup": warmup, "iters": iters, "quick": args.quick},
        "machine": machine(),
        "matmul_peak_gflops": peak,
        "load_avg_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
        "cases": results,
        "provenance": provenance.block(),
    }
    atomic_write_json(args.out, report)
    print(f"peak {peak:.1f} GFLOP/s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
