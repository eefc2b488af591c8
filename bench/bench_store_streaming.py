"""Benchmark: stream a latent store of image/text pairs into batches, with and without Ray Data.

Writes a store of ``--rows`` pairs (a 1280-d image latent and a 384-d text latent, float16 by
default), then measures, each in a fresh process so peak memory is its own:

* ``pyarrow``        -- the same shard files read with plain ``pyarrow`` into float32 numpy
                        (sequential, no shuffle): the floor for any reader;
* ``local``          -- ``LocalStoreStream`` (plain pyarrow, per-epoch shuffle) into torch batches;
* ``ray``            -- ``RayDataStream`` (Ray Data, per-epoch shuffle) into torch batches;
* ``ray_iter_torch`` -- Ray Data's own ``iter_torch_batches`` on the same dataset, for reference.

Ray runs with an object store budget (``--object-store-mb``) smaller than the store, and the
benchmark records the object store's peak use and spilled bytes, and the peak RSS of the
driver and of the Ray worker processes, to show streaming stays within the budget.

Prints a table and writes ``bench/results/store_streaming.json`` atomically (settings, command,
machine, provenance). Full size (the defaults) takes a few minutes on a 2-core machine;
``--quick`` (5,000 pairs, one epoch, the two readers without Ray unless ``--modes`` says otherwise)
checks the script in seconds.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

MiB = 2**20
RESULTS = Path(__file__).resolve().parent / "results" / "store_streaming.json"
MODES = ("pyarrow", "local", "ray", "ray_iter_torch")
QUICK_MODES = ("pyarrow", "local")  # no Ray start-up: seconds


# -- memory sampling ----------------------------------------------------------------------------


class PeakSampler:
    """Samples, every ``interval`` seconds, this process's RSS, the summed RSS of Ray worker
    processes (``ray::*``) and, when Ray is up, the object store's used and spilled bytes."""

    def __init__(self, interval: float = 0.1, ray_stats: bool = False) -> None:
        self.interval, self.ray_stats = interval, ray_stats
        self.peak = {"driver_rss_mb": 0.0, "ray_workers_rss_mb": 0.0, "object_store_used_mb": 0.0}
        self.spilled_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._me = psutil.Process()
        self._state = None
        self._raylet: psutil.Process | None = None

    def __enter__(self) -> "PeakSampler":
        if self.ray_stats:  # this benchmark's own Ray instance (others may run on the machine)
            import ray
            from ray._private import ray_constants
            from ray._private.internal_api import get_state_from_address

            self._state = get_state_from_address(ray.get_runtime_context().gcs_address)
            node = ray._private.worker.global_worker.node
            self._raylet = psutil.Process(node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        self._bump("driver_rss_mb", self._me.memory_info().rss / MiB)
        if not self.ray_stats:
            return
        workers = 0
        try:
            children = self._raylet.children(recursive=True)
        except psutil.Error:
            children = []
        for proc in children:
            try:
                if proc.cmdline()[:1] and proc.cmdline()[0].startswith("ray::"):
                    workers += proc.memory_info().rss
            except psutil.Error:
                pass
        self._bump("ray_workers_rss_mb", workers / MiB)
        try:
            from ray._private.internal_api import get_memory_info_reply

            stats = get_memory_info_reply(self._state, timeout_seconds=5).store_stats
            self._bump("object_store_used_mb", stats.object_store_bytes_used / MiB)
            self.spilled_mb = max(self.spilled_mb, round(stats.spilled_bytes_total / MiB, 1))
        except Exception:  # noqa: BLE001 - stats are best effort (private Ray API)
            pass

    def _bump(self, key: str, value: float) -> None:
        self.peak[key] = max(self.peak[key], round(value, 1))


# -- the measured readers (each runs in its own process) -----------------------------------------


def measure_pyarrow(store_uri: str, args: argparse.Namespace) -> dict:
    """Plain pyarrow: every shard file, in order, into float32 numpy arrays."""
    import pyarrow.parquet as pq

    from mmsearch.data.store import open_store

    table = open_store(store_uri).table("pairs")
    rows = 0
    with PeakSampler() as sampler:
        start = time.perf_counter()
        for path in table.shard_paths():
            for batch in pq.ParquetFile(table.filesystem.open_input_file(path)).iter_batches(batch_size=args.batch_size, columns=["image", "text"]):
                for name, dim in (("image", args.image_dim), ("text", args.text_dim)):
                    column = batch.column(name)
                    column.values.to_numpy().reshape(len(column), dim).astype(np.float32)
                rows += batch.num_rows
        seconds = time.perf_counter() - start
    return {"epochs": [{"rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds)}], "memory": sampler.peak}


def _epochs(stream_epoch, args: argparse.Namespace) -> list[dict]:
    out = []
    for epoch in range(args.epochs):
        rows, start = 0, time.perf_counter()
        first = None
        for batch in stream_epoch(epoch):
            if first is None:
                first = time.perf_counter() - start
            rows += int(batch["image"].shape[0])
        seconds = time.perf_counter() - start
        out.append({"epoch": epoch, "rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds), "first_batch_s": round(first or 0, 3)})
    return out


def measure_local(store_uri: str, args: argparse.Namespace) -> dict:
    from mmsearch.data.store import LocalStoreStream

    stream = LocalStoreStream.open(store_uri, "pairs", ["image", "text"])
    with PeakSampler() as sampler:
        epochs = _epochs(lambda e: stream.epoch(e, args.batch_size, seed=0), args)
    return {"epochs": epochs, "memory": sampler.peak}


def _start_ray(args: argparse.Namespace) -> float:
    import ray

    start = time.perf_counter()
    ray.init(
        num_cpus=args.num_cpus,
        object_store_memory=args.object_store_mb * MiB,
        include_dashboard=False,
        log_to_driver=False,
    )
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    return time.perf_counter() - start


def measure_ray(store_uri: str, args: argparse.Namespace) -> dict:
    from mmsearch.orchestration.ray_data import RayDataStream, default_block_bytes

    init_s = _start_ray(args)
    kwargs = {"shuffle_buffer_rows": args.shuffle_buffer_rows} if args.shuffle_buffer_rows else {}
    block_bytes = args.block_mb * MiB if args.block_mb else default_block_bytes()
    stream = RayDataStream.from_store(store_uri, "pairs", ["image", "text"], target_block_bytes=block_bytes, **kwargs)
    with PeakSampler(ray_stats=True) as sampler:
        epochs = _epochs(lambda e: stream.epoch(e, args.batch_size, seed=0), args)
    return {
        "epochs": epochs,
        "memory": sampler.peak,
        "spilled_mb": sampler.spilled_mb,
        "ray_init_s": round(init_s, 2),
        "block_mb": round(block_bytes / MiB, 1),
        "shuffle_window_rows": stream.shuffle_buffer_rows,
    }


def measure_ray_iter_torch(store_uri: str, args: argparse.Namespace) -> dict:
    from mmsearch.data.store import open_store
    from mmsearch.orchestration.ray_data import default_block_bytes, default_shuffle_buffer_rows, store_dataset

    init_s = _start_ray(args)
    table = open_store(store_uri).table("pairs")
    buffer_rows = args.shuffle_buffer_rows or default_shuffle_buffer_rows(table, args.batch_size)
    block_bytes = args.block_mb * MiB if args.block_mb else default_block_bytes()
    dataset = store_dataset(table, columns=["image", "text"], shuffle_seed=0, target_block_bytes=block_bytes)

    def epoch(e: int):
        return dataset.iter_torch_batches(batch_size=args.batch_size, local_shuffle_buffer_size=buffer_rows, local_shuffle_seed=e)

    with PeakSampler(ray_stats=True) as sampler:
        epochs = _epochs(epoch, args)
    return {
        "epochs": epochs,
        "memory": sampler.peak,
        "spilled_mb": sampler.spilled_mb,
        "ray_init_s": round(init_s, 2),
        "block_mb": round(block_bytes / MiB, 1),
        "shuffle_buffer_rows": buffer_rows,  # Ray's local shuffle buffer (pinned in the object store)
    }


MEASURE = {"pyarrow": measure_pyarrow, "local": measure_local, "ray": measure_ray, "ray_iter_torch": measure_ray_iter_torch}


# -- driver --------------------------------------------------------------------------------------


def machine_info() -> dict:
    import pyarrow
    import ray
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "versions": {"pyarrow": pyarrow.__version__, "ray": ray.__version__, "torch": torch.__version__, "numpy": np.__version__},
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def write_store(uri: str, args: argparse.Namespace) -> dict:
    from mmsearch.data.store.synthetic import write_synthetic_pairs

    start = time.perf_counter()
    manifest = write_synthetic_pairs(uri, args.rows, image_dim=args.image_dim, text_dim=args.text_dim, dtype=args.dtype, overwrite=True)
    seconds = time.perf_counter() - start
    shards = manifest.tables["pairs"].shards
    size = sum(s.bytes for s in shards)
    return {
        "rows": args.rows,
        "bytes": size,
        "mb": round(size / MiB, 1),
        "shards": len(shards),
        "row_groups": sum(len(s.row_groups) for s in shards),
        "rows_per_row_group": shards[0].row_groups[0],
        "write_seconds": round(seconds, 2),
        "write_rows_per_s": round(args.rows / seconds),
    }


def run_mode(mode: str, store_uri: str, argv: list[str]) -> dict:
    """Run one measurement in a fresh interpreter; it prints one JSON line last."""
    command = [sys.executable, __file__, *argv, "--_measure", mode, "--_store", store_uri]
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")})
    if proc.returncode != 0:
        raise RuntimeError(f"mode {mode} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(results: dict) -> None:
    store = results["store"]
    budget = results["settings"]["object_store_mb"]
    print(f"\nstore: {store['rows']} pairs, {store['mb']} MiB in {store['shards']} shards / {store['row_groups']} row groups; "
          f"written at {store['write_rows_per_s']} rows/s; object store budget {budget} MiB")
    print(f"{'mode':<16}{'epoch':>6}{'rows/s':>10}{'first batch s':>15}{'driver RSS MiB':>16}{'workers RSS MiB':>17}{'obj store MiB':>15}{'spilled MiB':>13}")
    for mode, result in results["modes"].items():
        mem = result["memory"]
        for row in result["epochs"]:
            print(f"{mode:<16}{row.get('epoch', 0):>6}{row['rows_per_s']:>10}{row.get('first_batch_s', '-'):>15}"
                  f"{mem['driver_rss_mb']:>16}{mem['ray_workers_rss_mb']:>17}{mem['object_store_used_mb']:>15}{result.get('spilled_mb', 0):>13}")
    for mode, result in results["modes"].items():
        if "spilled_mb" in result:
            within = result["memory"]["object_store_used_mb"] <= budget and result["spilled_mb"] == 0
            print(f"{mode}: object store peak {result['memory']['object_store_used_mb']} MiB of a {budget} MiB budget, "
                  f"spilled {result['spilled_mb']} MiB, store {store['mb']} MiB -> {'bounded' if within else 'NOT within budget'}")
    print("(workers RSS sums every Ray worker process of this run; shared pages count once per process)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="pairs in the store")
    parser.add_argument("--image-dim", type=int, default=1280)
    parser.add_argument("--text-dim", type=int, default=384)
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="stored latent dtype")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per streaming mode (the first includes start-up)")
    parser.add_argument("--object-store-mb", type=int, default=256, help="Ray object store budget (keep it below the store size)")
    parser.add_argument("--block-mb", type=int, default=None, help="Ray Data target block size (default: the library's, 1/32 of the object store, at most 16)")
    parser.add_argument("--shuffle-buffer-rows", type=int, default=None, help="shuffle window; default: about 64 MiB of rows")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count())
    parser.add_argument("--modes", default=None, help=f"comma-separated subset of {','.join(MODES)} (default: all; --quick: {','.join(QUICK_MODES)})")
    parser.add_argument("--quick", action="store_true", help="5,000 pairs, batches of 1,000, one epoch: checks the script works")
    parser.add_argument("--store-dir", default=None, help="where to write the store (default: a temporary directory, removed after)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--_measure", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--_store", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.batch_size, args.epochs = 5000, 1000, 1
    if args.modes is None:
        args.modes = ",".join(QUICK_MODES if args.quick else MODES)
    return args


def main(argv: list[str] | None = None) -> None:
    given, argv = argv, sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args._measure:  # child process: one measurement, one JSON line
        print(json.dumps(MEASURE[args._measure](args._store, args)))
        return
    from mmsearch.machine import Provenance

    provenance = Provenance(__file__, given)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise SystemExit(f"unknown modes {unknown}; choose from {MODES}")
    from mmsearch.io import atomic_write_json

    info = machine_info()
    workdir = Path(args.store_dir) if args.store_dir else Path(tempfile.mkdtemp(prefix="mmsearch_bench_store_"))
    store_uri = str(workdir / "pairs_store")
    try:
        print(f"writing {args.rows} pairs to {store_uri} ...", flush=True)
        store = write_store(store_uri, args)
        if store["mb"] <= args.object_store_mb:
            print(f"note: the store ({store['mb']} MiB) fits in the object store budget ({args.object_store_mb} MiB); "
                  "use more --rows or a smaller --object-store-mb to show bounded streaming", flush=True)
        results = {
            "benchmark": "store_streaming",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": provenance.command,
            "settings": {k: v for k, v in vars(args).items() if not k.startswith("_")},
            "machine": info,
            "store": store,
            "store_exceeds_object_store": store["mb"] > args.object_store_mb,
            "modes": {},
        }
        child_argv = list(argv)
        for mode in modes:
            print(f"measuring {mode} ...", flush=True)
            result = run_mode(mode, store_uri, child_argv)
            if "spilled_mb" in result:
                result["within_object_store_budget"] = (
                    result["memory"]["object_store_used_mb"] <= args.object_store_mb and result["spilled_mb"] == 0
                )
            results["modes"][mode] = result
    finally:
        if not args.store_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    results["provenance"] = provenance.block()
    atomic_write_json(args.out, results)
    report(results)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
