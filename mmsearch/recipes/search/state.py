"""What a supernet search carries between epochs, and its checkpoint directory.

A search is restored exactly from a checkpoint: model and optimiser states, every RNG the loop
draws from, and the position of the endless architecture-batch stream. Weight-step batch order
is a pure function of ``(seed, epoch)`` and checkpoints are taken only between epochs, so nothing
else needs saving. Checkpoint directory layout (one per reported epoch):

* ``state.pt``: ``format``, the resolved ``config`` (dict), ``supernet`` (weights, architecture
  weights and, through the strategy's extra state, its path-sampling generator), ``head``, both
  optimisers, ``weight_lr`` (the schedule is a pure function of the epoch), ``rng`` (torch CPU /
  CUDA, numpy's global and Python's ``random``), and the :class:`SearchProgress` fields (epoch,
  step counters, architecture-stream position, best-so-far, metric history, per-epoch specs with
  block probabilities). Tensors and plain values only (loads with ``weights_only=True``).
* ``arch.json``: the architecture derived at this epoch, with probabilities, seed, resolved
  config, epoch and task; ``best_arch.json``: the best one so far (once there is one).
* ``arch_history.json``: ``{"epoch1": spec, ...}`` (MMnas's file shape plus probabilities).
* ``config.yaml``: the resolved config.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from mmsearch.metrics.selection import is_new_best
from mmsearch.batch import MultimodalBatch
from mmsearch.config import config_to_dict, dump_config
from mmsearch.io import atomic_torch_save, atomic_write_json
from mmsearch.nas import ArchSpec, save_arch_spec
from mmsearch.data.task_data import TaskData
from mmsearch.recipes.resolve import config_differences as _differences

STATE_NAME = "state.pt"
STATE_FORMAT = "mmsearch.search_state/1"
# Config keys a resumed run may change: they do not alter what the finished epochs computed.
RESUMABLE_CHANGES = ("search.epochs", "output_dir", "data.root", "search.device", "search.num_threads", "eval.batch_size")


@dataclass
class SearchProgress:
    """The loop's state besides models and optimisers (epochs are 1-based; 0 = none finished)."""

    epoch: int = 0
    weight_steps: int = 0
    arch_steps: int = 0
    arch_position: tuple[int, int] = (0, 0)  # (pass over the arch part, batches taken from it)
    last_argmax: dict[str, list[int]] = field(default_factory=dict)  # per chain, after the last epoch
    best_epoch: int = 0  # best validation epoch after warm-up (0 = none yet)
    best_metric: float = math.nan
    best_spec: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # reported metrics per epoch
    arch_history: dict[str, dict[str, Any]] = field(default_factory=dict)  # "epochN" -> spec dict (no config)

    def consider(self, epoch: int, spec: ArchSpec, metric: float, searching: bool) -> bool:
        """Keep ``spec`` as the best architecture if its validation ``metric`` is at least the best so
        far (of equal scores the later epoch, as the experiment summary and Ray's checkpoint retention
        choose); only epochs whose architecture weights were trained (``searching``, after warm-up) count."""
        better = searching and is_new_best(metric, self.best_metric)
        if better:
            self.best_epoch, self.best_metric, self.best_spec = epoch, metric, spec.to_dict()
        return better

    def record(self, epoch: int, spec: ArchSpec, metrics: dict[str, Any]) -> None:
        """Close ``epoch``: its reported metrics and its spec (without the config) join the history."""
        self.epoch = epoch
        self.history.append(metrics)
        self.arch_history[f"epoch{epoch}"] = {k: v for k, v in spec.to_dict().items() if k != "config"}
        self.last_argmax = argmax_of(spec)


def argmax_of(spec: ArchSpec) -> dict[str, list[int]]:
    """Per chain, the index of each block's op in the spec's pools."""
    assert spec.op_pools is not None
    return {chain: [spec.op_pools[chain].index(name) for name in ops] for chain, ops in (("enc", spec.enc), ("dec", spec.dec))}


class ArchBatches:
    """Endless batches of the ``"arch"`` part: pass ``p`` is ``batches("arch", epoch=p, seed=seed)``.

    ``position`` = (pass, batches taken in it) is saved with the checkpoint; a stream created at
    a saved position re-creates that pass and skips the batches already taken.
    """

    def __init__(self, data: TaskData, batch_size: int, seed: int, drop_last: bool, position: tuple[int, int] = (0, 0)) -> None:
        self._data, self._batch_size, self._seed, self._drop_last = data, batch_size, seed, drop_last
        self._pass, self._taken = position
        self._iterator: Iterator[MultimodalBatch] | None = None

    @property
    def position(self) -> tuple[int, int]:
        return self._pass, self._taken

    def _open(self) -> Iterator[MultimodalBatch]:
        iterator = self._data.batches("arch", batch_size=self._batch_size, epoch=self._pass, seed=self._seed,
                                      shuffle=True, drop_last=self._drop_last)
        for _ in range(self._taken):
            if next(iterator, None) is None:
                raise ValueError(f"the arch part has fewer than {self._taken} batches in pass {self._pass}: data changed since the checkpoint?")
        return iterator

    def next(self) -> MultimodalBatch:
        for _ in range(2):  # the current pass, then (if it is used up) a fresh one
            if self._iterator is None:
                self._iterator = self._open()
            batch = next(self._iterator, None)
            if batch is not None:
                self._taken += 1
                return batch
            self._pass, self._taken, self._iterator = self._pass + 1, 0, None
        raise ValueError(f"the arch part gives no batch of {self._batch_size} samples (drop_last={self._drop_last})")


# --- RNG states --------------------------------------------------------------------------
def rng_state(device: torch.device) -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# --- checkpoint ----------------------------------------------------------------------------
def write_checkpoint(
    directory: Path,
    *,
    config: Any,
    supernet: nn.Module,
    head: nn.Module,
    weight_optimizer: torch.optim.Optimizer,
    arch_optimizer: torch.optim.Optimizer,
    progress: SearchProgress,
    spec: ArchSpec,
    device: torch.device,
) -> None:
    """Fill ``directory`` (a scratch directory the context then persists)."""
    state = {
        "format": STATE_FORMAT,
        "config": config_to_dict(config),
        "supernet": supernet.state_dict(),
        "head": head.state_dict(),
        "weight_optimizer": weight_optimizer.state_dict(),
        "arch_optimizer": arch_optimizer.state_dict(),
        "weight_lr": weight_optimizer.param_groups[0]["lr"],
        "rng": rng_state(device),
        "progress": {
            "epoch": progress.epoch,
            "weight_steps": progress.weight_steps,
            "arch_steps": progress.arch_steps,
            "arch_position": progress.arch_position,
            "last_argmax": progress.last_argmax,
            "best_epoch": progress.best_epoch,
            "best_metric": progress.best_metric,
            "best_spec": progress.best_spec,
            "history": progress.history,
            "arch_history": progress.arch_history,
        },
    }
    atomic_torch_save(state, directory / STATE_NAME)
    save_arch_spec(spec, directory / "arch.json")
    if progress.best_spec is not None:
        atomic_write_json(directory / "best_arch.json", progress.best_spec)
    atomic_write_json(directory / "arch_history.json", progress.arch_history)
    dump_config(config, directory / "config.yaml")


def restore_checkpoint(
    directory: Path,
    *,
    config: Any,
    supernet: nn.Module,
    head: nn.Module,
    weight_optimizer: torch.optim.Optimizer,
    arch_optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> SearchProgress:
    """Load ``directory`` into the models, optimisers and RNGs; returns the loop's progress."""
    path = Path(directory) / STATE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {directory} has no {STATE_NAME}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a supernet-search checkpoint (format {state.get('format')!r})")
    changed = config_differences(state["config"], config_to_dict(config))
    if changed:
        raise ValueError(
            f"checkpoint {directory} was written with a different config ({'; '.join(changed)}); only "
            f"{', '.join(RESUMABLE_CHANGES)} may change on resume. Use a new output_dir for a new search."
        )
    try:
        supernet.load_state_dict(state["supernet"])
        head.load_state_dict(state["head"])
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {directory} does not fit the configured supernet / head: {exc}") from exc
    weight_optimizer.load_state_dict(state["weight_optimizer"])
    arch_optimizer.load_state_dict(state["arch_optimizer"])
    set_rng_state(state["rng"], device)
    saved = state["progress"]
    return SearchProgress(
        epoch=int(saved["epoch"]),
        weight_steps=int(saved["weight_steps"]),
        arch_steps=int(saved["arch_steps"]),
        arch_position=(int(saved["arch_position"][0]), int(saved["arch_position"][1])),
        last_argmax={k: list(v) for k, v in saved["last_argmax"].items()},
        best_epoch=int(saved["best_epoch"]),
        best_metric=float(saved["best_metric"]),
        best_spec=saved["best_spec"],
        history=list(saved["history"]),
        arch_history=dict(saved["arch_history"]),
    )


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"key: saved -> current"`` for every differing leaf, except :data:`RESUMABLE_CHANGES`."""
    return _differences(saved, current, RESUMABLE_CHANGES)


__all__ = [
    "ArchBatches",
    "RESUMABLE_CHANGES",
    "STATE_NAME",
    "SearchProgress",
    "argmax_of",
    "config_differences",
    "restore_checkpoint",
    "rng_state",
    "seed_everything",
    "set_rng_state",
    "write_checkpoint",
]
