"""A resumable pool of benchmark cells: one unit of work, one result file, written atomically.

A rerun skips every cell that has a result file written under the same settings (each result
records a digest of what decides it: ``scope(cell, settings)``, by default all the settings; a
result of other settings is run again), so a killed run loses only the cells in flight. Cells run
in ``workers`` spawned processes (one torch thread each, set by the cell function), which end with
the run that started them (on Linux: a parent-death signal, so a killed run leaves no worker
behind to write into a work directory reused since), or, with ``workers <= 1``, in this process. Used by ``bench/bench_arch_oracle.py`` and
``bench/bench_estimators.py``.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import signal
import sys
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


def settings_digest(settings: Any) -> str:
    """What a cell's result was computed under (the settings, as JSON)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _run_and_store(fn: Callable[[Cell, Mapping[str, Any], str], dict[str, Any]], cell: Cell, settings: Mapping[str, Any],
                   work: str, digest: str) -> dict[str, Any]:
    result = dict(fn(cell, settings, work))
    result.setdefault("name", cell.name)
    result["settings_digest"] = digest
    atomic_write_json(cell_path(Path(work), cell.name), result)
    return result


def _die_with_parent() -> None:
    """Pool initializer: the worker gets SIGTERM when the process that started it dies (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _finished(work: Path, cell: Cell, digest: str) -> dict[str, Any] | None:
    path = cell_path(work, cell.name)
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    return result if result.get("settings_digest") == digest else None


def finished_cells(cells: Sequence[Cell], settings: Mapping[str, Any], work: Path,
                   scope: Callable[[Cell, Mapping[str, Any]], Any] | None = None) -> dict[str, dict[str, Any]]:
    """The results of ``cells`` already computed under these settings, by name (nothing is run)."""
    digests = {c.name: settings_digest(scope(c, settings) if scope else settings) for c in cells}
    return {c.name: result for c in cells if (result := _finished(work, c, digests[c.name])) is not None}


def run_cells(cells: Sequence[Cell], fn: Callable[[Cell, Mapping[str, Any], str], dict[str, Any]], settings: Mapping[str, Any],
              work: Path, workers: int, log: Callable[[str], None] = print,
              scope: Callable[[Cell, Mapping[str, Any]], Any] | None = None) -> dict[str, dict[str, Any]]:
    """Run every cell of ``cells`` without a result of the same settings (``fn(cell, settings,
    work_dir)``, a module-level function); returns every cell's result by name. ``scope(cell,
    settings)``: the part of the settings that decides that cell's result (default: all of them)."""
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise ValueError("cell names must be unique")
    digests = {c.name: settings_digest(scope(c, settings) if scope else settings) for c in cells}
    done = finished_cells(cells, settings, work, scope)
    pending = [c for c in cells if c.name not in done]
    stale = sum(cell_path(work, c.name).is_file() for c in pending)
    log(f"{len(cells)} cells: {len(done)} already done, {len(pending)} to run"
        + (f" ({stale} with a result of other settings, run again)" if stale else ""))
    if workers <= 1:
        from mmsearch.threads import torch_threads

        for cell in pending:
            with torch_threads(None):  # cells set their own thread count: the caller's comes back
                done[cell.name] = _run_and_store(fn, cell, settings, str(work), digests[cell.name])
            log(f"{cell.name} done ({len(done)}/{len(cells)})")
        return done
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_die_with_parent) as pool:
        running: dict[Future, Cell] = {pool.submit(_run_and_store, fn, c, dict(settings), str(work), digests[c.name]): c for c in pending}
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                cell = running.pop(future)
                done[cell.name] = future.result()
                log(f"{cell.name} done ({len(done)}/{len(cells)})")
    return done


__all__ = ["Cell", "cell_path", "finished_cells", "run_cells", "settings_digest"]
