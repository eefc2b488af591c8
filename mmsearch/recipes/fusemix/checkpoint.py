"""The FuseMix recipe's checkpoint directory: everything needed to resume a run exactly.

Layout (one directory per reported epoch):

  * ``state.pt``   -- model, optimiser, last finished epoch, global step, RNG states (torch CPU,
    CUDA, and the numpy generator that draws mixup), best-so-far score and epoch, metric history.
    Tensors and plain Python values only, loaded with ``weights_only=True``.
  * ``best/``      -- the best-on-validation adapters as an export (``mmsearch.embed``).
  * ``config.yaml`` -- the resolved config; ``metrics.json`` -- this epoch's metrics and history.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmsearch.adapters.model import FuseMixModel
from mmsearch.config import dump_config
from mmsearch.embed import WEIGHTS_NAME, SideSpec, export_adapters
from mmsearch.io import atomic_torch_save, atomic_write_json

STATE_NAME = "state.pt"
BEST_DIR = "best"
STATE_FORMAT = "mmsearch.fusemix_train_state"


@dataclass
class TrainProgress:
    """What the loop carries from epoch to epoch besides the model and optimiser."""

    last_epoch: int = -1  # last finished epoch (-1 = none)
    global_step: int = 0  # optimiser steps taken so far
    best_score: float = -math.inf  # best validation selection metric
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] | None = None  # CPU copy of the best model's state_dict
    history: list[dict[str, Any]] = field(default_factory=list)


def _rng_state(device: torch.device, mixup_rng: np.random.Generator) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "mixup": mixup_rng.bit_generator.state}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device, mixup_rng: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"])
    mixup_rng.bit_generator.state = state["mixup"]
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def write_checkpoint(
    directory: Path,
    *,
    config: Any,
    model: FuseMixModel,
    optimizer: torch.optim.Optimizer,
    progress: TrainProgress,
    mixup_rng: np.random.Generator,
    device: torch.device,
    sides: tuple[SideSpec, SideSpec],
    best_model: FuseMixModel,
) -> None:
    """Fill ``directory`` (a scratch directory the context then persists)."""
    state = {
        "format": STATE_FORMAT,
        "last_epoch": progress.last_epoch,
        "global_step": progress.global_step,
        "best_score": progress.best_score,
        "best_epoch": progress.best_epoch,
        "history": progress.history,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": _rng_state(device, mixup_rng),
    }
    atomic_torch_save(state, directory / STATE_NAME)
    export_adapters(best_model, directory / BEST_DIR, x=sides[0], y=sides[1],
                    metadata={"best_epoch": progress.best_epoch, "best_score": progress.best_score})
    dump_config(config, directory / "config.yaml")
    atomic_write_json(directory / "metrics.json", {"latest": progress.history[-1] if progress.history else {},
                                                   "history": progress.history})


def restore_checkpoint(
    directory: Path,
    *,
    model: FuseMixModel,
    optimizer: torch.optim.Optimizer,
    mixup_rng: np.random.Generator,
    device: torch.device,
) -> TrainProgress:
    """Load ``directory`` into ``model``/``optimizer``/RNGs; returns the loop's progress."""
    from safetensors.torch import load_file

    state_path = directory / STATE_NAME
    if not state_path.is_file():
        raise FileNotFoundError(f"checkpoint {directory} has no {STATE_NAME}")
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{state_path} is not a FuseMix training checkpoint (format {state.get('format')!r})")
    try:
        model.load_state_dict(state["model"], strict=True)
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {directory} does not fit the configured adapters: {exc}") from exc
    optimizer.load_state_dict(state["optimizer"])
    _set_rng_state(state["rng"], device, mixup_rng)
    best_weights = directory / BEST_DIR / WEIGHTS_NAME
    return TrainProgress(
        last_epoch=int(state["last_epoch"]),
        global_step=int(state["global_step"]),
        best_score=float(state["best_score"]),
        best_epoch=int(state["best_epoch"]),
        best_state=load_file(str(best_weights)) if best_weights.is_file() else None,
        history=list(state["history"]),
    )
