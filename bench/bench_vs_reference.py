"""Side-by-side speed against the reference code (MMnas, FuseMix), in one run, at the same shapes.

The reference implementations run *unmodified* from local checkouts that are never part of this
repository: MILVLG/mmnas at 552e29e and layer6ai-labs/fusemix at 6121195, extracted with
``git --git-dir=<mirror> archive <commit> | tar -x -C <folder>`` into ``REFCODE/mmnas`` and
``REFCODE/fusemix``. Their files are checked against the pinned commits' git blob hashes before
anything is timed. The reference's heavy dependencies are replaced by the small stand-ins of the
reference probes folder (``--probes``: ``mmnas_probe.py`` stubs spaCy and drives MMnas's own model
classes; ``fusemix_stubs/lavis`` replaces the LAVIS registry / BaseModel / dist utilities, next to
which the upstream FuseMix files are copied, unchanged, into a temporary folder).

Every case is timed round by round, interleaved (reference, project; the next round project,
reference), each side in a fresh process with the same threads; every run records wall and CPU
seconds per step (medians over its timed steps) and the 1-minute load before and after it. The ratio
(reference seconds per sample / project seconds per sample) is taken per round from the two runs of
that round, never from recorded figures. The project's runs also profile a few steps after the timed
ones for the kernel floor (``bench_mmnas_step.kernel_floor``: the seconds of the matmul, LSTM and
optimiser kernels per step), and each MMnas case records ``speedup_at_kernel_floor``, the reference's
time over that floor: the most any eager fp32 rewrite of the project's step could reach.

Cases (``--cases``; default: the tiny ones and FuseMix):
  tiny_derived            derived VQA net, H=128, batch 8, 14 tokens, 36 regions, vocab 1000, 100 answers
  tiny_supernet_weight_h64 / tiny_supernet_arch_h64   the reference's tiny supernet (H=64, 12 + 18 blocks)
  fusemix_2048_halves     FuseMix adapters at the reference size, B=2048, the reference's halves mixing
  search_derived / search_supernet_weight / search_supernet_arch   MMnas search size (H=256, 100
                          regions, vocab 20k, 3129 answers); the project at batch 64, the reference at
                          ``--search-ref-batch`` (the ratio is per sample)

    python bench/bench_vs_reference.py --refcode /work/refcode --probes ../shared/reference/probes
    python bench/bench_vs_reference.py --refcode ... --probes ... --cases search_derived --rounds 2
    python bench/bench_vs_reference.py --quick --self   # the project against itself: checks the plumbing

Without the reference checkouts the script says so, writes that into its results JSON and exits 0
having timed nothing. Writes ``bench/results/vs_reference.json`` atomically (or ``--out``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "vs_reference.json"
MMNAS_COMMIT = "552e29e666625819799ca22de324df2be50626cc"
FUSEMIX_COMMIT = "6121195ef70fa0c718842a29dcd30ba67fa812b2"
# git blob hashes of the reference files that are run, at the pinned commits (`git ls-tree -r`).
MMNAS_BLOBS = {
    "arch/mmnas_vqa.json": "d9d8db7351de119b88b649b02a841c4230a6fee3",
    "mmnas/loader/load_data_vqa.py": "a95458e2351d4bfec9ae6d0e73cb131afbdafd55",
    "mmnas/model/full_vqa.py": "c96680c1727b666fd386b367fb92aa981f5ed16f",
    "mmnas/model/hygr_vqa.py": "8597bafaf6bfda39439af86ab7a9f165656984dd",
    "mmnas/model/mixed.py": "dbbd69c9917d67cc61697c21d6f69ce11fbe8757",
    "mmnas/model/modules.py": "b64575fca72e73a8279539e35eef54c3c89a3e7f",
    "mmnas/utils/answer_punct.py": "827f84eeb88964ff0a212b7c9b6c161b9f34a89b",
    "mmnas/utils/ops_adapter.py": "66d2677a7560c4b4593eb92c85e7450ae99a4c38",
}
FUSEMIX_BLOBS = {
    "lavis/common/optims.py": "28b68645d509eedbafb47e8efa213ba6e2cc63f3",
    "lavis/models/fusion_models/mixup.py": "0ebc584b499cc88d271f021959f266fb65c73d02",
    "lavis/models/fusion_models/mlp_contrastive_fusion.py": "987fd1efd0180750d77ee77195bbd3b249499aea",
    "lavis/models/fusion_models/utils.py": "973f77463a5fabac29d832543fe475f819b53cb6",
}
TINY = ["--batch", "8", "--tokens", "14", "--regions", "36", "--feat", "2048", "--vocab", "1000", "--answers", "100"]
SEARCH = ["--hsize", "256", "--tokens", "14", "--regions", "100", "--feat", "2048", "--vocab", "20000", "--answers", "3129"]


@dataclass(frozen=True)
class Case:
    kind: str  # "mmnas" | "fusemix"
    project_case: str  # bench_mmnas_step case name, or the FuseMix batch
    probe_args: tuple[str, ...]  # mmnas_probe.py arguments (without --src, batch for search cases, timing)
    warmup: int
    iters: int
    search: bool = False


CASES: dict[str, Case] = {
    "tiny_derived": Case("mmnas", "tiny_derived", ("--mode", "full", "--hsize", "128", *TINY), 3, 20),
    "tiny_supernet_weight_h64": Case("mmnas", "tiny_supernet_weight_h64", ("--mode", "search-w", "--hsize", "64", *TINY), 3, 10),
    "tiny_supernet_arch_h64": Case("mmnas", "tiny_supernet_arch_h64", ("--mode", "search-a", "--hsize", "64", *TINY), 3, 10),
    "fusemix_2048_halves": Case("fusemix", "2048", (), 1, 2),
    "search_derived": Case("mmnas", "search_derived", ("--mode", "full", *SEARCH), 1, 4, search=True),
    "search_supernet_weight": Case("mmnas", "search_supernet_weight", ("--mode", "search-w", *SEARCH), 1, 4, search=True),
    "search_supernet_arch": Case("mmnas", "search_supernet_arch", ("--mode", "search-a", *SEARCH), 1, 4, search=True),
}
DEFAULT_CASES = ["tiny_derived", "tiny_supernet_weight_h64", "tiny_supernet_arch_h64", "fusemix_2048_halves"]


# --- the reference checkouts ----------------------------------------------------------------------


def git_blob(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def missing_reference(args: argparse.Namespace, cases: list[str]) -> str | None:
    """Why the reference side cannot run (a one-line message), or None."""
    if args.refcode is None or args.probes is None:
        return "no reference checkout given (--refcode REFCODE with REFCODE/mmnas and REFCODE/fusemix, --probes DIR)"
    needed = [args.probes / "mmnas_probe.py", args.probes / "mmnas_tiny_arch.json", args.probes / "fusemix_stubs" / "lavis"]
    needed += [args.refcode / name for name in ("mmnas", "fusemix") if any(CASES[c].kind == name for c in cases)]
    absent = [str(p) for p in needed if not p.exists()]
    return f"reference checkout not found: {', '.join(absent)}" if absent else None


def verify_pinned(root: Path, blobs: dict[str, str], commit: str) -> None:
    """Exit 2 if a reference file that is run is absent or differs from the pinned commit's."""
    for rel, expected in blobs.items():
        path = root / rel
        found = git_blob(path) if path.is_file() else "absent"
        if found != expected:
            print(f"error: {path} is not the file of the pinned commit {commit[:7]} (blob {found}, expected {expected})", file=sys.stderr)
            raise SystemExit(2)


def fusemix_package(refcode: Path, probes: Path, into: Path) -> Path:
    """The probes' LAVIS stand-ins plus the upstream FuseMix files, unchanged, in a temporary folder."""
    pkg = into / "fusemix_pkg"
    shutil.copytree(probes / "fusemix_stubs", pkg)
    for rel in FUSEMIX_BLOBS:
        shutil.copyfile(refcode / "fusemix" / rel, pkg / rel)
    return pkg


# --- the timed children ---------------------------------------------------------------------------


def child_project_mmnas(case_name: str, warmup: int, iters: int) -> dict[str, Any]:
    sys.path.insert(0, str(BENCH))
    from bench_mmnas_step import CASES as STEP_CASES, time_case

    # After the timed steps, a few profiled ones give the kernel floor (bench_mmnas_step.kernel_floor).
    result = time_case(STEP_CASES[case_name], warmup, iters, floor_steps=max(1, min(iters, 5)))
    return {"wall_s": result["step_s"]["median"], "cpu_s": result["cpu_s_per_step_median"],
            "batch": STEP_CASES[case_name].batch, "params": result["params"],
            "kernel_floor_s": result["floor"]["kernel_s_per_step"], "kernel_share": result["floor"]["kernel_share"]}


def child_project_fusemix(batch: int, warmup: int, iters: int, threads: int) -> dict[str, Any]:
    sys.path.insert(0, str(BENCH))
    from bench_fusemix_step import run_one

    result = run_one(batch, "halves", warmup, iters, threads, None, "auto")
    return {"wall_s": result["step_s_median"], "cpu_s": result["cpu_s_median"], "batch": batch}


def child_reference_fusemix(pkg: Path, batch: int, warmup: int, iters: int, threads: int) -> dict[str, Any]:
    """FuseMix's own model, mixup scheduler and LR scheduler (upstream files) driven as
    BaseTask._train_inner_loop does (amp off), AdamW grouped as RunnerBase.optimizer does."""
    import numpy as np
    import torch

    sys.path.insert(0, str(pkg))
    from lavis.common.optims import LinearWarmupCosineLRScheduler
    from lavis.models.fusion_models.mixup import CosineMixupAlphaScheduler
    from lavis.models.fusion_models.mlp_contrastive_fusion import MLPContrastiveFusion

    torch.set_num_threads(threads)
    torch.manual_seed(42)
    np.random.seed(42)
    model = MLPContrastiveFusion(vis_embed_dim=1536, text_embed_dim=1024, proj_embed_dim=512, proj_bias=True,
                                 num_layers_vis=4, num_layers_text=4, expansion_factor=4, dropout=0.6).train()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            plain = p.ndim < 2 or "bias" in name or "ln" in name or "bn" in name
            (no_decay if plain else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0}],
                            lr=1e-3, weight_decay=0.1, betas=(0.9, 0.999))
    lr_sched = LinearWarmupCosineLRScheduler(optimizer=opt, max_epoch=500, min_lr=1e-6, init_lr=1e-3,
                                             warmup_steps=100, warmup_start_lr=1e-6)
    CosineMixupAlphaScheduler(model=model, max_epoch=500, init_alpha=1.0, max_alpha=1.0).step(cur_epoch=0)
    samples = {"vis_embed": torch.randn(batch, 1536), "text_embed": torch.randn(batch, 1024)}
    walls, cpus = [], []
    for i in range(warmup + iters):
        wall, cpu = time.perf_counter(), time.process_time()
        lr_sched.step(cur_epoch=0, cur_step=i)
        loss = model(samples).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        loss.item()
        if i >= warmup:
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "batch": batch}


# --- the driver -----------------------------------------------------------------------------------


def side_command(side: str, name: str, args: argparse.Namespace, pkg: Path | None, quick: bool) -> list[str]:
    """The command of one timed run (``side`` is "reference" or "project")."""
    case = CASES[name]
    warmup, iters = (1, 2) if quick else (case.warmup, case.iters)
    timing = ["--warmup", str(warmup), "--iters", str(iters), "--threads", str(args.threads)]
    me = [sys.executable, str(Path(__file__).resolve())]
    if side == "project" or args.self_check:
        return [*me, "--child", f"project-{case.kind}", case.project_case, *timing]
    if case.kind == "fusemix":
        return [*me, "--child", "reference-fusemix", case.project_case, "--pkg", str(pkg), *timing]
    probe = [sys.executable, str(args.probes / "mmnas_probe.py"), "--src", str(args.refcode / "mmnas"), "--task", "vqa"]
    extra = ["--arch", str(args.probes / "mmnas_tiny_arch.json")] if name == "tiny_derived" else []
    batch = ["--batch", str(args.search_ref_batch)] if case.search else []
    return [*probe, *case.probe_args, *extra, *batch, *timing]


def run_side(cmd: list[str]) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH.parent), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"error: a timed run failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if "step_s_median" in out:  # mmnas_probe.py's line
        out = {"wall_s": out["step_s_median"], "cpu_s": out["cpu_s_per_step_median"], "batch": out["batch"],
               "params": out["params_total"], "last_loss": out["last_loss"]}
    return {**out, "load_1m": [load_before, os.getloadavg()[0]], "process_s": time.perf_counter() - start}


def ratio_range(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def compare(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-round ratios (reference s/sample over project s/sample) from the runs of the same round."""
    rounds = sorted({r["round"] for r in runs})
    by = {(r["round"], r["side"]): r for r in runs}
    wall = [(by[k, "reference"]["wall_s"] / by[k, "reference"]["batch"]) / (by[k, "project"]["wall_s"] / by[k, "project"]["batch"]) for k in rounds]
    cpu = [(by[k, "reference"]["cpu_s"] / by[k, "reference"]["batch"]) / (by[k, "project"]["cpu_s"] / by[k, "project"]["batch"]) for k in rounds]
    summary = {"speedup_wall": wall, "speedup_cpu": cpu, "speedup_wall_range": ratio_range(wall), "speedup_cpu_range": ratio_range(cpu)}
    if all("kernel_floor_s" in by[k, "project"] for k in rounds):
        # The most this project could gain in eager fp32 if every op but the matmul, LSTM and
        # optimiser kernels cost nothing: the reference's time over the project's kernel time.
        summary["speedup_at_kernel_floor"] = [
            (by[k, "reference"]["wall_s"] / by[k, "reference"]["batch"]) / (by[k, "project"]["kernel_floor_s"] / by[k, "project"]["batch"])
            for k in rounds]
    for side in ("reference", "project"):
        mine = [by[k, side] for k in rounds]
        summary[side] = {"wall_s": [r["wall_s"] for r in mine], "cpu_s": [r["cpu_s"] for r in mine], "batch": mine[0]["batch"]}
        if "kernel_floor_s" in mine[0]:
            summary[side]["kernel_floor_s"] = [r["kernel_floor_s"] for r in mine]
            summary[side]["kernel_share"] = [r["kernel_share"] for r in mine]
        if CASES[name].kind == "fusemix":
            summary[side]["input_pairs_per_s"] = [r["batch"] / r["wall_s"] for r in mine]
    return summary


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refcode", type=Path, help="folder holding the extracted reference checkouts mmnas/ and fusemix/")
    parser.add_argument("--probes", type=Path, help="the reference probes folder (mmnas_probe.py, mmnas_tiny_arch.json, fusemix_stubs/)")
    parser.add_argument("--cases", nargs="+", default=None, choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--search-ref-batch", type=int, default=64, help="the reference's batch at the search size (ratio per sample)")
    parser.add_argument("--self", dest="self_check", action="store_true", help="time the project against itself (no reference needed)")
    parser.add_argument("--quick", action="store_true", help="1 round of tiny_derived, 1 warm-up + 2 timed steps: checks the script works")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--pkg", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--iters", type=int, help=argparse.SUPPRESS)
    parser.add_argument("child_case", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.threads < 1 or args.search_ref_batch < 1:
        parser.error("--rounds, --threads and --search-ref-batch must be at least 1")
    return args


def run_child(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    if args.child == "project-mmnas":
        result = child_project_mmnas(args.child_case, args.warmup, args.iters)
    elif args.child == "project-fusemix":
        result = child_project_fusemix(int(args.child_case), args.warmup, args.iters, args.threads)
    else:
        result = child_reference_fusemix(args.pkg, int(args.child_case), args.warmup, args.iters, args.threads)
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        return run_child(args)
    from mmsearch.io import atomic_write_json
    from mmsearch.machine import Provenance

    provenance = Provenance(__file__, argv)
    cases = ["tiny_derived"] if args.quick and not args.cases else (args.cases or DEFAULT_CASES)
    rounds = 1 if args.quick else args.rounds
    report: dict[str, Any] = {"benchmark": "vs_reference", "command": provenance.command, "self_check": args.self_check,
                              "settings": {"cases": cases, "rounds": rounds, "threads": args.threads, "quick": args.quick,
                                           "search_ref_batch": args.search_ref_batch,
                                           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset: active)")}}
    why = None if args.self_check else missing_reference(args, cases)
    if why:
        message = f"vs_reference: skipped, nothing timed: {why}"
        print(message)
        atomic_write_json(args.out, {**report, "skipped": message, "provenance": provenance.block()})
        return 0
    if not args.self_check:
        verify_pinned(args.refcode / "mmnas", MMNAS_BLOBS, MMNAS_COMMIT)
        if any(CASES[c].kind == "fusemix" for c in cases):
            verify_pinned(args.refcode / "fusemix", FUSEMIX_BLOBS, FUSEMIX_COMMIT)
        report["reference"] = {"mmnas": {"repo": "MILVLG/mmnas", "commit": MMNAS_COMMIT, "path": str(args.refcode / "mmnas")},
                               "fusemix": {"repo": "layer6ai-labs/fusemix", "commit": FUSEMIX_COMMIT, "path": str(args.refcode / "fusemix")},
                               "probes": str(args.probes), "files_verified": len(MMNAS_BLOBS) + len(FUSEMIX_BLOBS)}
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vs_reference_") as scratch:
        needs_pkg = not args.self_check and any(CASES[c].kind == "fusemix" for c in cases)
        pkg = fusemix_package(args.refcode, args.probes, Path(scratch)) if needs_pkg else None
        for r in range(rounds):
            order = ("reference", "project") if r % 2 == 0 else ("project", "reference")
            for name in cases:
                for side in order:
                    run = {"case": name, "round": r, "side": side, **run_side(side_command(side, name, args, pkg, args.quick))}
                    runs.append(run)
                    print(f"round {r} {name:26s} {side:9s} {run['wall_s']:8.4f} s/step (CPU {run['cpu_s']:.4f})  "
                          f"batch {run['batch']:5d}  load {run['load_1m'][0]:.2f}->{run['load_1m'][1]:.2f}", flush=True)
    report["cases"] = {name: compare(name, [r for r in runs if r["case"] == name]) for name in cases}
    loads = [x for r in runs for x in r["load_1m"]]
    report["load_1m"] = {"min": min(loads), "max": max(loads)}
    report["runs"] = runs
    report["provenance"] = provenance.block()
    atomic_write_json(args.out, report)
    for name, c in report["cases"].items():
        w, u = c["speedup_wall_range"], c["speedup_cpu_range"]
        floor = c.get("speedup_at_kernel_floor")
        at_floor = f"; at the kernel floor {min(floor):.2f}-{max(floor):.2f}x" if floor else ""
        print(f"{name:26s} project vs reference: {w['min']:.2f}-{w['max']:.2f}x wall, {u['min']:.2f}-{u['max']:.2f}x CPU per sample{at_floor}")
    print(f"load 1m {report['load_1m']['min']:.2f}-{report['load_1m']['max']:.2f}; wrote {args.out}")
    if report["load_1m"]["max"] > (os.cpu_count() or 1):
        print(f"warning: the 1-minute load reached {report['load_1m']['max']:.1f} on {os.cpu_count()} cores: "
              "these times are not a quiet machine's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
