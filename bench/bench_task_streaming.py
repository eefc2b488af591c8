"""Benchmark: a search trial's data in memory vs streamed from the store (``data.regions``).

Writes a VQA-shaped precomputed data set -- ``--regions`` regions x ``--dim``-d float16 features
per image, ``--questions-per-image`` question rows per image (token ids and answers; with
``--text-input states`` also per-token float16 states, which the data set then reads per batch
too) -- at each of ``--sizes`` (multiples of ``--images`` images; ``task_streaming_store.py``), then
iterates one shuffled epoch of the ``train`` part through ``open_task_data`` with ``data.regions:
memory`` and with ``data.regions: stream``, each case in a fresh process so its peak RSS
(``resource.getrusage`` maxrss) is its own. It records peak RSS, the RSS before the data set was
opened (interpreter, torch, pyarrow), rows/s, the row groups read (regions; and of the question
table when its states stream), and the load average around each case.

``--step-ms N`` follows each batch with a stand-in training step of N ms (fp32 matmuls on one torch
thread; ``--step-kind idle``: a sleep, the cores left to the data as by a step on an accelerator)
and records how long each step then waits for its next batch (``wait_ms_per_batch``), and the
machine's busy CPU per batch (``machine_cpu_ms_per_batch``, ``/proc/stat``: Ray's processes too).
The step and its timing figures are ``step_loop.py``'s.

Peak RSS also grows with how many batches a process has served (the allocators' and the caches'
steady state: one case at 1x, idle step, before ``42d3e8c``: 588 MiB after one epoch of 32
batches, 725 after 16, 717 after 48), so at ``--epochs`` per size the small sizes are compared
before they settle.
``--same-batches`` runs each smaller size ``largest / size`` times as many epochs: every size serves
as many batches, and the peak RSS ratio measures the store's size alone.

``--ray-train`` adds a case per size: the streamed epoch inside a one-worker Ray Train trainer, as
``train_derived`` workers get their data (``mmsearch.orchestration.train_rows``: the streamed rows
of the worker's batches read by Ray Data tasks, received through the object store, collated with
what the worker holds): the worker's peak RSS (from inside it), rows/s, waits, the Ray Data blocks
and rows received, the object store's peak and spilled bytes. ``--ray-data`` adds the search
trial's case under Tune (``RayDataTaskData`` in a local Ray instance started in the case's
process; its peak RSS includes Ray's driver). Timing figures mean something only on a quiet
machine: the JSON keeps them next to the load average.

Prints a table and writes ``bench/results/task_streaming.json`` atomically (with
``mmsearch.machine.Provenance``); ``--quick`` (tiny sizes, cases in this process, so the RSS
figures are not per case) checks the script in seconds.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [p for p in (str(Path(__file__).resolve().parent),) if p not in sys.path]  # the data set writer next to this script
from step_loop import busy_step, cpu_figures, epoch_figures, machine_cpu_seconds, run_epochs, wait_figures  # noqa: E402
from task_streaming_store import write_dataset  # noqa: E402

MiB = 2**20
RESULTS = Path(__file__).resolve().parent / "results" / "task_streaming.json"
MODES = ("memory", "stream")
RAY_TRAIN = "ray_train"  # --ray-train: the stream case again, inside a one-worker Ray Train trainer
RAY_DATA = "ray_data"  # --ray-data: the stream case again, its region rows through Ray Data (a search trial under Tune)


def _rss_mb() -> float:
    from mmsearch.machine import peak_rss_mib

    return peak_rss_mib()  # this process's peak so far


def measure(root: str, mode: str, args: argparse.Namespace) -> dict:
    """``--epochs`` epochs of the train part through ``open_task_data`` in ``mode``."""
    from mmsearch.data.task_data import TaskDataConfig
    from mmsearch.data.tasks import open_task_data

    load_before = [round(x, 2) for x in os.getloadavg()]
    rss_before = _rss_mb()
    cfg = TaskDataConfig(root=root, task="vqa", text_input=args.text_input, regions=mode, region_cache_mib=args.cache_mib,
                         shuffle_block=args.shuffle_block)
    step = busy_step(args.step_ms, args.step_kind)
    start, cpu = time.perf_counter(), machine_cpu_seconds()
    data = open_task_data(cfg)
    rows, first, waits, epoch_seconds = run_epochs(
        lambda epoch: data.batches("train", batch_size=args.batch_size, seed=0, epoch=epoch), args.epochs, step, start)
    seconds, cpu = time.perf_counter() - start, machine_cpu_seconds() - cpu
    regions, text = data._split("train").regions, data._split("train").text_rows
    return {
        "step_ms": args.step_ms, "step_kind": args.step_kind, **epoch_figures(rows, epoch_seconds),
        "wait_ms_per_batch": wait_figures(waits), **cpu_figures(cpu, len(waits) + 1),
        "rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds, 1), "first_batch_s": round(first or 0.0, 3),
        "rss_before_open_mb": round(rss_before, 1), "peak_rss_mb": round(_rss_mb(), 1),
        "peak_above_start_mb": round(_rss_mb() - rss_before, 1),
        "row_groups_read": regions.reads if regions is not None else None,
        # decoded MiB of the row groups read, and of the rows the batches used from them (deterministic)
        "read_mb": round(regions.bytes_read / MiB, 1) if regions is not None else None,
        "served_mb": round(regions.bytes_served / MiB, 1) if regions is not None else None,
        "read_amplification": round(regions.bytes_read / regions.bytes_served, 2) if regions is not None else None,
        # the question table's row groups read for the token states (text_input: states, streamed)
        "text_row_groups_read": text.reads if text is not None else None,
        "text_read_mb": round(text.bytes_read / MiB, 1) if text is not None else None,
        "load_average": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]},
    }


def ray_train_loop(config: dict) -> None:
    """A Ray Train worker's epoch as ``train_derived`` gets it (``worker_shard``): its share of the
    epoch's positions, their region rows read by Ray Data tasks and received through the object
    store, collated with the text held in the worker; each batch followed by the stand-in step."""
    import ray.train

    from mmsearch.data.task_data import TaskDataConfig
    from mmsearch.data.tasks import open_task_data
    from mmsearch.machine import peak_rss_mib
    from mmsearch.orchestration.ray_task_rows import warm_up
    from mmsearch.orchestration.train_rows import worker_shard

    before = peak_rss_mib()
    warming = warm_up()  # as train_loop_per_worker does before opening the data
    data = open_task_data(TaskDataConfig(root=config["root"], task="vqa", text_input=config["text_input"], regions="stream",
                                         region_cache_mib=config["cache_mib"], shuffle_block=config["shuffle_block"],
                                         ray_data_min_mib=0))  # Ray Data at any size
    shard = worker_shard(data, rank=ray.train.get_context().get_world_rank(), world_size=1, batch_size=config["batch_size"],
                         seed=0, drop_last=False, local_start=config["local_start"], warming=warming)
    step = busy_step(config["step_ms"], config["step_kind"])
    start, cpu = time.perf_counter(), machine_cpu_seconds()
    rows, _, waits, epoch_seconds = run_epochs(shard.epoch, config["epochs"], step, start)
    seconds, cpu = time.perf_counter() - start, machine_cpu_seconds() - cpu
    shard.settle()  # as train_loop_per_worker does at its end
    Path(config["out"]).write_text(json.dumps({"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "rss_before_open_mb": before,
                                               "peak_rss_mb": peak_rss_mib(), "waits": wait_figures(waits), **cpu_figures(cpu, len(waits) + 1),
                                               **epoch_figures(rows, epoch_seconds),
                                               "shard": type(shard).__name__, **shard.stats()}))  # the driver reads it


def measure_ray_train(root: str, args: argparse.Namespace) -> dict:
    """``--epochs`` epochs through a one-worker Ray Train trainer (see :func:`ray_train_loop`); the worker's
    peak RSS, and the object store's peak and spilled bytes sampled from the driver."""
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from mmsearch.orchestration.cluster import LOCAL_RAY_SYSTEM_CONFIG

    from bench_store_streaming import PeakSampler

    ray.init(num_cpus=2, object_store_memory=args.object_store_mb * MiB, include_dashboard=False, log_to_driver=False,
             _system_config=dict(LOCAL_RAY_SYSTEM_CONFIG))  # as a job's local Ray (cluster.connect)
    try:
        with tempfile.TemporaryDirectory(prefix="mmsearch_bench_train_") as storage, PeakSampler(ray_stats=True) as sampler:
            out = Path(storage) / "worker.json"
            config = {"root": root, "text_input": args.text_input, "epochs": args.epochs, "local_start": args.local_start, "cache_mib": args.cache_mib, "shuffle_block": args.shuffle_block, "batch_size": args.batch_size, "step_ms": args.step_ms, "step_kind": args.step_kind, "out": str(out)}
            trainer = TorchTrainer(ray_train_loop, train_loop_config=config,
                                   scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
                                   run_config=ray.train.RunConfig(storage_path=storage, name="bench"))
            result = trainer.fit()
            if result.error is not None or not out.is_file():
                raise RuntimeError(f"the Ray Train case failed: {result.error!r}")
            metrics = json.loads(out.read_text())
    finally:
        ray.shutdown()
    return {"step_ms": args.step_ms, "step_kind": args.step_kind, "rows": int(metrics["rows"]), "seconds": round(metrics["seconds"], 3),
            "machine_cpu_ms_per_batch": metrics["machine_cpu_ms_per_batch"],
            "epoch_seconds": metrics["epoch_seconds"], "later_epochs_rows_per_s": metrics["later_epochs_rows_per_s"],
            "rows_per_s": round(metrics["rows_per_s"], 1), "rss_before_open_mb": metrics["rss_before_open_mb"],
            "peak_rss_mb": metrics["peak_rss_mb"], "wait_ms_per_batch": metrics["waits"] if args.step_ms else None,
            "object_store_peak_mb": sampler.peak["object_store_used_mb"], "spilled_mb": sampler.spilled_mb,
            "row_groups_read": None, "read_mb": None, "read_amplification": None,
            "shard": metrics["shard"], "ray_data_blocks": metrics["ray_data_blocks"], "ray_data_rows": metrics["ray_data_rows"],
            "local_batches": metrics["local_batches"], "local_rows": metrics["local_rows"]}


def measure_ray_data(root: str, args: argparse.Namespace) -> dict:
    """``--epochs`` epochs as a search trial under Tune iterates them on a streamed store (``RayDataTaskData``:
    region rows read by Ray Data tasks, received through the object store) in a local Ray
    instance started here; this process's peak RSS (the trial's; it includes Ray's driver) and
    the object store's peak and spilled bytes. The reading tasks' own processes are not counted."""
    import ray

    from bench_store_streaming import PeakSampler
    from mmsearch.data.task_data import TaskDataConfig
    from mmsearch.data.tasks import open_task_data
    from mmsearch.orchestration.cluster import LOCAL_RAY_SYSTEM_CONFIG
    from mmsearch.orchestration.ray_task_rows import RayDataTaskData

    load_before = [round(x, 2) for x in os.getloadavg()]
    rss_before = _rss_mb()
    ray.init(num_cpus=2, object_store_memory=args.object_store_mb * MiB, include_dashboard=False, log_to_driver=False,
             _system_config=dict(LOCAL_RAY_SYSTEM_CONFIG))  # as a job's local Ray (cluster.connect)
    try:
        with PeakSampler(ray_stats=True) as sampler:
            step = busy_step(args.step_ms, args.step_kind)
            start, cpu = time.perf_counter(), machine_cpu_seconds()
            data = RayDataTaskData(open_task_data(TaskDataConfig(root=root, task="vqa", text_input=args.text_input, regions="stream",
                                                                 region_cache_mib=args.cache_mib, shuffle_block=args.shuffle_block)),
                                   local_start=args.local_start)
            rows, first, waits, epoch_seconds = run_epochs(
                lambda epoch: data.batches("train", batch_size=args.batch_size, seed=0, epoch=epoch), args.epochs, step, start)
            seconds, cpu = time.perf_counter() - start, machine_cpu_seconds() - cpu
    finally:
        ray.shutdown()
    return {"step_ms": args.step_ms, "step_kind": args.step_kind, **epoch_figures(rows, epoch_seconds), "wait_ms_per_batch": wait_figures(waits),
            **cpu_figures(cpu, len(waits) + 1), "rows": rows, "seconds": round(seconds, 3),
            "rows_per_s": round(rows / seconds, 1), "first_batch_s": round(first or 0.0, 3),
            "rss_before_open_mb": round(rss_before, 1), "peak_rss_mb": round(_rss_mb(), 1),
            "row_groups_read": data.inner._split("train").regions.reads, "read_mb": None, "read_amplification": None,
            "text_row_groups_read": getattr(data.inner._split("train").text_rows, "reads", None),  # by this process: 0
            "object_store_peak_mb": sampler.peak["object_store_used_mb"], "spilled_mb": sampler.spilled_mb, **data.stats(),
            "load_average": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]}}


CASES = {RAY_TRAIN: measure_ray_train, RAY_DATA: measure_ray_data}


def run_case(root: str, mode: str, argv: list[str]) -> dict:
    """``measure`` in a fresh interpreter (its own peak RSS); it prints one JSON line last."""
    command = [sys.executable, __file__, *argv, "--_measure", mode, "--_root", root]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"case {mode} at {root} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="images at size 1x")
    parser.add_argument("--sizes", default="1,4,16", help="comma-separated multiples of --images")
    parser.add_argument("--questions-per-image", type=int, default=2)
    parser.add_argument("--regions", type=int, default=36, help="regions per image")
    parser.add_argument("--text-input", choices=("tokens", "states"), default="tokens",
                        help="what the questions carry and the data set reads: token ids, or per-token float16 states too (streamed)")
    parser.add_argument("--dim", type=int, default=1280, help="region feature width (float16)")
    parser.add_argument("--batch-size", type=int, default=64, help="the search step's batch size")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per case (past the first, a streamed epoch's Ray Data start "
                                                                  "is a new dataset in a process whose Ray workers are up)")
    parser.add_argument("--same-batches", action="store_true",
                        help="every size serves as many batches as the largest's --epochs: a smaller size runs --epochs x "
                             "(largest / size) epochs, so peak RSS is compared at equal run length, not only at equal epochs")
    parser.add_argument("--row-group-kib", type=int, default=1024, help="KiB of Arrow data per Parquet row group")
    parser.add_argument("--row-groups-per-shard", type=int, default=8, help="row groups per Parquet file (the writer's default: 8)")
    parser.add_argument("--shuffle-block", type=int, default=1, help="data.shuffle_block of every case (samples shuffled together)")
    parser.add_argument("--cache-mib", type=int, default=64, help="data.region_cache_mib of the streamed cases (MiB)")
    parser.add_argument("--step-ms", type=float, default=0.0,
                        help="a stand-in training step of this many ms after each batch (matmuls, one torch thread): "
                             "records how long each step waits for its next batch; 0: iterate only (rows/s)")
    parser.add_argument("--step-kind", choices=("cpu", "idle"), default="cpu",
                        help="cpu: the step's matmuls take a core (a CPU search); idle: it sleeps, leaving the cores to the data "
                             "(as a step on an accelerator)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, cases in this process: checks the script")
    parser.add_argument("--store-dir", default=None, help="where to write the data sets (default: a temporary directory, removed after)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--ray-train", action="store_true",
                        help="also run the streamed epoch in a one-worker Ray Train trainer (positions through its dataset, "
                             "as train_derived gets them): the worker's peak RSS, rows/s, object-store peak and spilled bytes")
    parser.add_argument("--ray-data", action="store_true",
                        help="also run the streamed epoch as a search trial under Tune reads it (region rows through Ray Data): "
                             "the trial process's peak RSS, rows/s, object-store peak and spilled bytes")
    parser.add_argument("--local-start", action=argparse.BooleanOptionalAction, default=True,
                        help="--ray-train / --ray-data: read the first batches in the process while Ray Data starts (the default)")
    parser.add_argument("--object-store-mb", type=int, default=256, help="--ray-train / --ray-data: the local Ray instance's object store (MiB)")
    parser.add_argument("--_measure", choices=(*MODES, RAY_TRAIN, RAY_DATA), help=argparse.SUPPRESS)
    parser.add_argument("--_root", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.shuffle_block < 1:
        parser.error(f"--shuffle-block must be >= 1 (samples), got {args.shuffle_block}")
    if args.step_ms < 0:
        parser.error(f"--step-ms must be >= 0, got {args.step_ms}")
    if args.object_store_mb < 75:
        parser.error(f"--object-store-mb must be at least 75 (MiB: Ray's smallest object store), got {args.object_store_mb}")
    if args.quick and (args.ray_train or args.ray_data):
        parser.error("--ray-train and --ray-data run each case in its own process: not with --quick")
    if args.quick:
        args.images, args.sizes, args.cache_mib = 12, "1,4", 1
    return args


def report(results: dict) -> None:
    print(f"{'size':>5}{'images':>8}{'regions MiB':>13}{'mode':>10}{'peak RSS MiB':>14}{'before open':>13}{'rows/s':>9}"
          f"{'groups read':>13}{'read MiB':>10}{'amplif.':>9}{'wait ms/batch':>15}")
    for size, case in results["sizes"].items():
        for mode in (m for m in (*MODES, RAY_TRAIN, RAY_DATA) if m in case):
            m = case[mode]
            print(f"{size:>5}{case['store']['images']:>8}{case['store']['regions_mb']:>13}{mode:>10}{m['peak_rss_mb']:>14}"
                  f"{m['rss_before_open_mb']:>13}{m['rows_per_s']:>9}{str(m['row_groups_read']):>13}"
                  f"{str(m['read_mb']):>10}{str(m['read_amplification']):>9}"
                  f"{(str(m['wait_ms_per_batch']['median']) if m.get('step_ms') and m['wait_ms_per_batch'] else '-'):>15}")
    for size, case in results["sizes"].items():
        for mode in (m for m in (RAY_TRAIN, RAY_DATA) if m in case):
            print(f"{size}: {mode} case: object store peak {case[mode]['object_store_peak_mb']} MiB, "
                  f"spilled {case[mode]['spilled_mb']} MiB")
    if any(case["epochs"] > 1 for case in results["sizes"].values()):
        for size, case in results["sizes"].items():
            later = {mode: case[mode]["later_epochs_rows_per_s"] for mode in (*MODES, RAY_TRAIN, RAY_DATA) if mode in case}
            print(f"{size}: {case['epochs']} epochs; rows/s past the first: {later}")
    for mode, ratio in results["peak_rss_ratio_largest_to_smallest"].items():
        print(f"{mode}: peak RSS at the largest size / at the smallest = {ratio}")
    print("(rows/s were measured on whatever load the machine had: see each case's load_average)")


def main(argv: list[str] | None = None) -> int:
    given, argv = argv, sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args._measure:  # child: one case, one JSON line
        case = CASES.get(args._measure) or functools.partial(measure, mode=args._measure)
        print(json.dumps(case(args._root, args=args)))
        return 0
    from mmsearch.io import atomic_write_json
    from mmsearch.machine import Provenance

    provenance = Provenance(__file__, given)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    modes = (*MODES, *([RAY_TRAIN] if args.ray_train else []), *([RAY_DATA] if args.ray_data else []))
    workdir = Path(args.store_dir) if args.store_dir else Path(tempfile.mkdtemp(prefix="mmsearch_bench_tasks_"))
    results: dict = {"benchmark": "task_streaming", "settings": {k: v for k, v in vars(args).items() if not k.startswith("_")},
                     "per_case_process": not args.quick, "sizes": {}}
    try:
        for size in sizes:
            root = workdir / f"vqa_{size}x"
            print(f"writing {size}x ({size * args.images} images) to {root} ...", flush=True)
            epochs = args.epochs * round(max(sizes) / size) if args.same_batches else args.epochs
            case = {"store": write_dataset(root, size * args.images, args), "epochs": epochs}
            size_args, size_argv = argparse.Namespace(**{**vars(args), "epochs": epochs}), [*argv, "--epochs", str(epochs)]
            for mode in modes:
                print(f"  {mode} ({epochs} epochs) ...", flush=True)
                case[mode] = measure(str(root), mode, size_args) if args.quick else run_case(str(root), mode, size_argv)
            if len({case[mode]["rows"] for mode in modes}) != 1:
                raise RuntimeError(f"{size}x: the cases served different row counts ({ {m: case[m]['rows'] for m in modes} })")
            results["sizes"][f"{size}x"] = case
            if not args.store_dir:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        if not args.store_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    first, last = results["sizes"][f"{sizes[0]}x"], results["sizes"][f"{sizes[-1]}x"]
    results["peak_rss_ratio_largest_to_smallest"] = {m: round(last[m]["peak_rss_mb"] / first[m]["peak_rss_mb"], 3) for m in modes}
    results["provenance"] = provenance.block()
    atomic_write_json(args.out, results)
    report(results)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
