"""What a recipe needs from whoever runs it: where to write, how to report, what to restore.

A recipe is ``fn(config, context=None)``. Called directly, it gets a :class:`LocalContext`
(checkpoints and metrics under a local run directory). Under Ray Tune or Ray Train the
orchestration layer (``mmsearch.orchestration``) passes a context backed by ``tune.report`` /
``ray.train.report``. Recipes never import Ray themselves.

A checkpoint is a plain directory the recipe fills (``state.pt``, ``arch.json``,
``config.yaml``, ...); the context persists it and hands the latest one back on restore.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mmsearch.io import atomic_directory, atomic_write_text

log = logging.getLogger(__name__)

EPOCH_KEY = "epoch"  # every report carries it: a monotonically increasing integer, the fidelity unit of ASHA
# A report with ``warmup: 1`` marks an epoch that cannot be the run's best (a search's epochs before
# its architecture weights train: the architecture is not the one it outputs). The experiment
# summary, the report and Ray's checkpoint retention pass over it; ASHA and Tune's metric do not.
WARMUP_KEY = "warmup"


@runtime_checkable
class RunContext(Protocol):
    """The runtime a recipe is running under."""

    rank: int  # this worker's rank (0 when not distributed)
    world_size: int  # number of workers (1 when not distributed)

    @property
    def output_dir(self) -> Path:
        """A local directory for this run's (or trial's) own files: plots, logs, exports."""

    def restored_checkpoint(self) -> Path | None:
        """Local directory of the checkpoint to resume from, or None for a fresh start."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        """Report one epoch's metrics, optionally with a checkpoint directory to persist."""


class LocalContext:
    """Runs a recipe in this process; checkpoints under ``<run_dir>/checkpoints/epoch_NNNNNN``."""

    rank = 0
    world_size = 1

    def __init__(self, run_dir: str | Path, *, resume: bool = True, keep_checkpoints: int = 2) -> None:
        self._run_dir = Path(run_dir)
        self._run_dir.mkdir(parents=True, exist_ok=True)
        self._resume = resume
        self._keep = max(1, keep_checkpoints)
        self.history: list[dict[str, Any]] = []
        if not resume and self._checkpoints():
            # Starting over next to old checkpoints would mix two runs' epochs in one directory.
            raise ValueError(
                f"run directory {self._run_dir} already holds checkpoints; resume it or choose another directory"
            )

    @property
    def output_dir(self) -> Path:
        return self._run_dir

    @property
    def checkpoint_root(self) -> Path:
        return self._run_dir / "checkpoints"

    def _checkpoints(self) -> list[Path]:
        if not self.checkpoint_root.is_dir():
            return []
        return sorted(p for p in self.checkpoint_root.iterdir() if p.is_dir() and p.name.startswith("epoch_"))

    def restored_checkpoint(self) -> Path | None:
        if not self._resume:
            return None
        found = self._checkpoints()
        return found[-1] if found else None

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        record = dict(metrics)
        self.history.append(record)
        metrics_path = self._run_dir / "metrics.jsonl"
        with metrics_path.open("a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")
        if checkpoint_dir is not None:
            epoch = int(metrics.get("epoch", len(self.history)))
            target = self.checkpoint_root / f"epoch_{epoch:06d}"
            with atomic_directory(target) as scratch:
                shutil.copytree(checkpoint_dir, scratch, dirs_exist_ok=True)
            for old in self._checkpoints()[: -self._keep]:
                shutil.rmtree(old, ignore_errors=True)
            atomic_write_text(self._run_dir / "latest_checkpoint", target.name + "\n")
        log.debug("epoch %s: %s", metrics.get("epoch"), _short(metrics))


def _short(metrics: dict[str, Any]) -> str:
    parts = []
    for key, value in metrics.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif isinstance(value, (int, str)) and len(str(value)) < 40:
            parts.append(f"{key}={value}")
    return " ".join(parts)
