"""A resumable pool of benchmark cells: one unit of work, one result file, written atomically.

A rerun skips every cell that has a result file, so a killed run loses only the cells in flight.
Cells run in ``workers`` spawned processes (one torch thread each, set by the cell function) or,
with ``workers <= 1``, in this process. Used by ``bench/bench_arch_oracle.py`` and
``bench/bench_estimators.py``.
"""
from __future__ import annotations

import json
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mmsearch.io import atomic_write_json


@dataclass(frozen=True)
class Cell:
    name: str  # unique, file-name safe
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def cell_path(work: Path, name: str) -> Path:
    return Path(work) / "cells" / f"{name}.json"


def _run_and_store(fn: Callable[[Cell, Mapping[str, Any], str], dict[str, Any]], cell: Cell, settings: Mapping[str, Any],
                   work: str) -> dict[str, Any]:
    result = dict(fn(cell, settings, work))
    result.setdefault("name", cell.name)
    atomic_write_json(cell_path(Path(work), cell.name), result)
    return result


def run_cells(cells: Sequence[Cell], fn: Callable[[Cell, Mapping[str, Any], str], dict[str, Any]], settings: Mapping[str, Any],
              work: Path, workers: int, log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Run every cell of ``cells`` without a result file (``fn(cell, settings, work_dir)``, a
    module-level function); returns every cell's result by name."""
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise ValueError("cell names must be unique")
    done = {c.name: json.loads(cell_path(work, c.name).read_text()) for c in cells if cell_path(work, c.name).is_file()}
    pending = [c for c in cells if c.name not in done]
    log(f"{len(cells)} cells: {len(done)} already done, {len(pending)} to run")
    if workers <= 1:
        import torch

        threads = torch.get_num_threads()
        for cell in pending:
            try:
                done[cell.name] = _run_and_store(fn, cell, settings, str(work))
            finally:  # cells set their own thread count (and recipes theirs): the caller's comes back
                torch.set_num_threads(threads)
            log(f"{cell.name} done ({len(done)}/{len(cells)})")
        return done
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        running: dict[Future, Cell] = {pool.submit(_run_and_store, fn, c, dict(settings), str(work)): c for c in pending}
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                cell = running.pop(future)
                done[cell.name] = future.result()
                log(f"{cell.name} done ({len(done)}/{len(cells)})")
    return done


__all__ = ["Cell", "cell_path", "run_cells"]
