"""Search quality on the embedded benchmark: searched vs MCAN vs random architectures, retrained.

For each task (VQA, VG, ITM) on the default embedded data set (``ensure_dataset()``: 1500
procedurally generated scenes through the frozen encoders), at one small depth and width:

1. **search**: the one-shot supernet search (``run_search``, ProxylessNAS binary gates as MMnas;
   ``--strategies proxyless darts`` adds DARTS) with ``--seeds`` seeds, everything else equal;
   each seed's architecture is the argmax at the last epoch (MMnas's ``genotype()``);
2. **proxy**: every search's final supernet scores *every* architecture that is retrained below
   on the search's validation part (the weight-sharing estimate, ``Supernet.fixed_plan``);
3. **train**: from scratch, same depth, width and training budget (``train_derived``, seed 0):
   each searched architecture; the MCAN baseline at this depth (encoder SA, FFN alternating,
   decoder SA, GA, FFN repeated: :func:`mcan_spec`) with ``--noise-seeds`` training seeds, which
   measures the retraining noise; MMnas's MCAN-like *prior* (decoder RSA, GA, FFN repeated:
   ``mcan_prior_spec``), which differs from MCAN only in RSA for SA; ``--randoms`` uniformly
   random architectures from the same pools (``random_spec``).

Reported (printed, ``bench/results/search_quality.json``, ``bench/search_quality.md``): test
metrics of every retrained architecture (mean +- std over repeats) with VQA accuracy by answer
type and by question family, VG acc@0.5 (and by family), ITM R@1/5/10 both ways; op counts of the
searched architectures vs the uniform expectation and which decoder blocks take RSA / GA;
seed-to-seed agreement of the derived architectures vs chance and the final per-block entropy;
the supernet's estimate vs the standalone metric (and Kendall's tau between them over all
retrained architectures).

Every search, proxy evaluation and training is a *cell* with a result file under
``<work-dir>/cells``; a rerun skips the cells that have one (a crashed run loses at most the cells
in flight; a search cell also resumes from its own checkpoints). Cells run in a pool of
``--workers`` processes with one torch thread each.

    python bench/bench_search_quality.py                 # full run (about an hour on 2 cores)
    python bench/bench_search_quality.py --quick         # tiny synthetic data, seconds (the test)
    python bench/bench_search_quality.py --tasks vqa --strategies proxyless darts
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Mapping

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the search_quality package next to this script
from search_quality.analysis import analyse  # noqa: E402
from search_quality.cells import plan_cells, run_cells  # noqa: E402
from search_quality.report import kept_interpretation, markdown, print_summary  # noqa: E402
from search_quality.settings import MARKDOWN, REPO, RESULTS, TASKS, benchmark_settings  # noqa: E402


# --- main ------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny synthetic data and models (seconds)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--strategies", nargs="+", default=["proxyless"], help="search strategies (proxyless, darts, spos)")
    parser.add_argument("--seeds", type=int, default=3, help="search seeds per task and strategy")
    parser.add_argument("--randoms", type=int, default=3, help="random architectures per task")
    parser.add_argument("--noise-seeds", type=int, default=3, help="training seeds of the MCAN baseline (retraining noise)")
    parser.add_argument("--workers", type=int, default=2, help="pool processes (1 = run in this process)")
    parser.add_argument("--data-root", default=None, help="precomputed data set (default: ensure_dataset())")
    parser.add_argument("--work-dir", default=None, help="cell results and run directories (default: runs/bench_search_quality[_quick])")
    parser.add_argument("--out", default=None, help=f"results JSON (default: {RESULTS.relative_to(REPO)}; --quick: <work-dir>/search_quality.json)")
    parser.add_argument("--markdown", default=None, help=f"markdown section (default: {MARKDOWN.relative_to(REPO)}; --quick: in <work-dir>)")
    args = parser.parse_args(argv)
    if args.seeds < 2 or args.randoms < 1 or args.noise_seeds < 2:
        parser.error("need --seeds >= 2 (agreement), --randoms >= 1 and --noise-seeds >= 2 (noise)")

    from mmsearch.io import atomic_write_json, atomic_write_text
    from mmsearch.machine import Provenance

    provenance = Provenance(__file__, argv)
    work = Path(args.work_dir or REPO / "runs" / ("bench_search_quality_quick" if args.quick else "bench_search_quality"))
    if args.quick:
        data_root = "synthetic"
    else:
        from mmsearch.orchestration.precompute import ensure_dataset

        data_root = args.data_root or ensure_dataset()
    settings = benchmark_settings(args, data_root)
    _check_work_dir(work, settings)
    cells = plan_cells(settings)
    start, loads = time.perf_counter(), [os.getloadavg()[0]]
    print(f"{len(cells)} cells in {work}; data {data_root}", flush=True)
    results = run_cells(cells, settings, work, args.workers, log=lambda line: (loads.append(os.getloadavg()[0]), print(line, flush=True)))
    wall = time.perf_counter() - start
    loads += [x for r in results.values() for x in r["load_1m"]]
    figures = analyse(settings, results)
    model = settings["search"][settings["tasks"][0]]["model"]
    report = {
        "settings": settings,
        "width": {"hidden": model["hidden"], "heads": model["hidden"] // model["head_dim"]},
        "run": {
            "command": provenance.command,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {__import__('torch').__version__}, Python {platform.python_version()}",
            "wall_s": wall,  # this invocation (cells done earlier are not counted)
            "cell_s": sum(r["wall_s"] for r in results.values()),
            "cells": len(results),
            "workers": args.workers,
            "load_1m": {"min": min(loads), "max": max(loads), "mean": statistics.fmean(loads)},
            "cell_commits": cell_commits(results),
        },
        "tasks": figures,
        "cells": results,
        "provenance": provenance.block(),
    }
    older = {c: n for c, n in report["run"]["cell_commits"].items() if c.split(" ")[0] != provenance.git["commit"]}
    if older:
        print(f"note: {sum(older.values())} cells were computed at other commits ({older}); their figures are from "
              "that code: use a fresh --work-dir to measure this commit", flush=True)
    out = Path(args.out) if args.out else (work / "search_quality.json" if args.quick else RESULTS)
    md = Path(args.markdown) if args.markdown else (work / "search_quality.md" if args.quick else MARKDOWN)
    atomic_write_json(out, report)
    # A hand-written interpretation below the generated tables survives regeneration.
    previous = kept_interpretation(md.read_text()) if md.is_file() else ""
    atomic_write_text(md, markdown(report) + ("\n" + previous if previous else ""))
    print_summary(figures)
    print(f"\nwrote {out} and {md} ({wall / 60:.1f} min)")
    return 0


def cell_commits(results: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """How many cells each commit computed (``"unrecorded"``: cells from before commits were recorded)."""
    counts: dict[str, int] = {}
    for result in results.values():
        key = result.get("commit") or "unrecorded"
        key += " (dirty)" if result.get("dirty") else ""
        counts[key] = counts.get(key, 0) + 1
    return counts


def _check_work_dir(work: Path, settings: Mapping[str, Any]) -> None:
    """Cells of a previous run are reused only with the same settings (else: another --work-dir);
    tasks may be added to a work directory later."""
    from mmsearch.io import atomic_write_json

    def digest(obj: Any) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]

    shared = digest({k: v for k, v in settings.items() if k not in ("tasks", "search", "train")})
    tasks = {t: digest([settings["search"][t], settings["train"][t]]) for t in settings["tasks"]}
    stamp = work / "settings.json"
    saved = json.loads(stamp.read_text()) if stamp.is_file() else {"shared": shared, "tasks": {}}
    changed = [t for t in tasks if saved["tasks"].get(t, tasks[t]) != tasks[t]]
    if saved["shared"] != shared or changed:
        raise SystemExit(f"{work} holds cells of a run with other settings ({', '.join(changed) or 'shared settings'}); "
                         "use another --work-dir or delete it")
    atomic_write_json(stamp, {"shared": shared, "tasks": {**saved["tasks"], **tasks}})


if __name__ == "__main__":
    sys.exit(main())
