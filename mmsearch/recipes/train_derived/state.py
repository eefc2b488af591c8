"""What derived-architecture training carries between epochs, and its checkpoint directory.

A checkpoint is self-describing: evaluation and fine-tuning need nothing but it (not the search
run, not the config file it was started from). Layout, one directory per reported epoch:

* ``arch.json``: the architecture (:class:`~mmsearch.nas.ArchSpec`, with its search provenance);
* ``config.yaml``: the resolved training config (data sizes, head, optimiser, ...);
* ``model.pt``: the :class:`~mmsearch.recipes.train_derived.engine.DerivedModel` state dict (fp32);
* ``train_state.pt``: ``format``, the config as a dict, the spec, and the loop's progress (epoch,
  step and sample counters, best validation epoch, per-epoch metrics);
* the engine's own state: ``optimizer.pt`` (plain torch / DDP) or ``deepspeed/`` (DeepSpeed's
  per-rank shards, written by every rank);
* ``rng/rank_NNNNN.pt``: each rank's RNG states (torch, numpy, Python; CUDA when used).

The learning rate is a pure function of the epoch and batch order one of ``(seed, epoch)``, so
with these a resumed one-process run continues exactly as an uninterrupted one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmsearch.metrics.selection import is_new_best
from mmsearch.config import config_to_dict, dump_config
from mmsearch.io import atomic_torch_save
from mmsearch.nas import ArchSpec, save_arch_spec
from mmsearch.recipes.search.state import rng_state, set_rng_state
from mmsearch.recipes.train_derived.engine import TrainEngine
from mmsearch.recipes.resolve import config_differences as _differences

STATE_NAME = "train_state.pt"
STATE_FORMAT = "mmsearch.train_state/1"
ARCH_NAME = "arch.json"
CONFIG_NAME = "config.yaml"
RNG_DIR = "rng"
# Config keys (dotted prefixes) a resumed run may change: they do not alter what the finished
# epochs computed. More epochs continue the schedule; workers, storage and evaluation may change.
RESUMABLE_CHANGES = ("train.epochs", "train.device", "train.num_threads", "output_dir", "data.root", "eval.", "scaling.", "run.")


@dataclass
class TrainProgress:
    """The loop's state besides model and optimiser (epochs are 1-based; 0 = none finished)."""

    epoch: int = 0
    steps: int = 0  # optimiser steps, all epochs
    samples: int = 0  # training samples, all ranks, all epochs
    best_epoch: int = 0  # best validation epoch (0 = none yet)
    best_metric: float = math.nan
    history: list[dict[str, Any]] = field(default_factory=list)  # reported metrics per epoch

    def record(self, epoch: int, metrics: dict[str, Any], val_metric: float | None) -> None:
        self.epoch = epoch
        self.history.append(metrics)
        if val_metric is not None and is_new_best(val_metric, self.best_metric):
            self.best_epoch, self.best_metric = epoch, val_metric

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "steps": self.steps, "samples": self.samples, "best_epoch": self.best_epoch,
                "best_metric": self.best_metric, "history": self.history}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> "TrainProgress":
        return cls(epoch=int(saved["epoch"]), steps=int(saved["steps"]), samples=int(saved["samples"]),
                   best_epoch=int(saved["best_epoch"]), best_metric=float(saved["best_metric"]),
                   history=list(saved["history"]))


def rng_file(directory: Path, rank: int) -> Path:
    return directory / RNG_DIR / f"rank_{rank:05d}.pt"


def write_checkpoint(directory: Path, *, config: Any, spec: ArchSpec, engine: TrainEngine, progress: TrainProgress,
                     rank: int) -> None:
    """Fill ``directory`` (this rank's scratch directory; Ray Train merges the ranks' directories)."""
    engine.save(directory, rank)
    atomic_torch_save(rng_state(engine.device), rng_file(directory, rank))
    if rank == 0:
        state = {"format": STATE_FORMAT, "config": config_to_dict(config), "spec": spec.to_dict(), "progress": progress.to_dict()}
        atomic_torch_save(state, directory / STATE_NAME)
        save_arch_spec(spec, directory / ARCH_NAME)
        dump_config(config, directory / CONFIG_NAME)


def read_state(directory: Path) -> dict[str, Any]:
    path = Path(directory) / STATE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a derived-training checkpoint: it has no {STATE_NAME}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a derived-training checkpoint (format {state.get('format')!r})")
    return state


def restore_checkpoint(directory: Path, *, config: Any, engine: TrainEngine, rank: int) -> TrainProgress:
    """Load ``directory`` into the engine and this rank's RNGs; returns the loop's progress."""
    state = read_state(directory)
    changed = config_differences(state["config"], config_to_dict(config))
    if changed:
        raise ValueError(
            f"checkpoint {directory} was written with a different config ({'; '.join(changed)}); only "
            f"{', '.join(RESUMABLE_CHANGES)} may change on resume. Use a new run name / output_dir for a new run."
        )
    engine.load(Path(directory))
    rng = rng_file(Path(directory), rank)
    if rng.is_file():  # absent when resuming on more workers than wrote the checkpoint
        set_rng_state(torch.load(rng, map_location="cpu", weights_only=True), engine.device)
    return TrainProgress.from_dict(state["progress"])


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"key: saved -> current"`` for every differing leaf, except :data:`RESUMABLE_CHANGES`."""
    return _differences(saved, current, RESUMABLE_CHANGES)


__all__ = [
    "ARCH_NAME",
    "CONFIG_NAME",
    "RESUMABLE_CHANGES",
    "STATE_NAME",
    "TrainProgress",
    "config_differences",
    "read_state",
    "restore_checkpoint",
    "rng_file",
    "write_checkpoint",
]
