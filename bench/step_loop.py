"""A stand-in training loop for the data benchmarks, and its timing figures.

``busy_step`` is the step (fp32 matmuls on one torch thread, or a sleep that leaves the cores to
the data); ``run_epochs`` iterates a data source's epochs with that step after each batch and
records how long each step waited for its next batch; the ``*_figures`` helpers turn what it
measured into the JSON figures (ms, rows/s); ``machine_cpu_seconds`` reads ``/proc/stat``, so a
batch's CPU counts every process of the machine (Ray's too).
"""
from __future__ import annotations

import os
import time

import numpy as np


def busy_step(ms: float, kind: str = "cpu"):
    """A stand-in for the training step: fp32 matmuls on one torch thread for ``ms`` milliseconds
    (0: nothing). Like a real step it releases the GIL, so the reader's thread can decode meanwhile.
    ``kind="idle"``: the step sleeps instead, using no core, as a step on an accelerator leaves
    the host's cores to the data."""
    if ms <= 0:
        return lambda: None
    if kind == "idle":
        return lambda: time.sleep(ms / 1e3)
    import torch

    torch.set_num_threads(1)  # a search trial's torch threads: one per CPU it is given
    a = torch.randn(192, 192)

    def step() -> None:
        end = time.perf_counter() + ms / 1e3
        while time.perf_counter() < end:
            a @ a

    return step


def machine_cpu_seconds() -> float:
    """CPU seconds the machine has been busy since boot (``/proc/stat``; every process, Ray's too)."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in stat.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_figures(cpu_seconds: float, batches: int) -> dict:
    """The machine's busy CPU per batch over the epochs (ms; the step's own included)."""
    return {"machine_cpu_ms_per_batch": round(1e3 * cpu_seconds / max(1, batches), 1)}


def run_epochs(epoch_batches, epochs: int, step, start: float) -> tuple[int, float | None, list[float], list[float]]:
    """Iterate ``epoch_batches(e)`` for each epoch, ``step()`` after each batch: rows served,
    seconds from ``start`` to the first batch, how long each later step waited for its next batch
    (seconds), and each epoch's seconds (the first's from ``start``: it includes opening the data)."""
    rows, first, waits, epoch_seconds = 0, None, [], []
    for epoch in range(epochs):
        began = start if epoch == 0 else time.perf_counter()
        batches = iter(epoch_batches(epoch))
        while True:
            asked = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            if first is None:
                first = time.perf_counter() - start
            else:  # what a training step waits for its next batch
                waits.append(time.perf_counter() - asked)
            rows += int(batch.region_feats.shape[0])
            step()
        epoch_seconds.append(time.perf_counter() - began)
    return rows, first, waits, epoch_seconds


def epoch_figures(rows: int, epoch_seconds: list[float]) -> dict:
    """Seconds per epoch and, past the first (which starts the data), the rows/s of the later ones."""
    per_epoch = rows / len(epoch_seconds)
    later = sum(epoch_seconds[1:])
    return {"epoch_seconds": [round(x, 3) for x in epoch_seconds],
            "later_epochs_rows_per_s": round(per_epoch * (len(epoch_seconds) - 1) / later, 1) if later else None}


def wait_figures(waits: list[float]) -> dict | None:
    """Median, mean and p90 of the waits, ms (``None`` without any)."""
    if not waits:
        return None
    return {"median": round(1e3 * float(np.median(waits)), 2), "mean": round(1e3 * float(np.mean(waits)), 2),
            "p90": round(1e3 * float(np.percentile(waits, 90)), 2)}


__all__ = ["busy_step", "cpu_figures", "epoch_figures", "machine_cpu_seconds", "run_epochs", "wait_figures"]
