"""Inside a Ray Train worker: the recipe's context, this worker's data shard, and the DDP engine.

:func:`train_loop_per_worker` is what ``TorchTrainer`` runs on every worker. It opens the task
data in the worker (the precomputed stores' sample tables and, with ``data.regions: stream``,
only the index of their streamed rows), takes its share of the training samples
(:func:`mmsearch.orchestration.train_rows.worker_shard`: every rank's share of the same
``(seed, epoch)`` permutation; streamed rows arrive through Ray Data) and runs
:func:`mmsearch.recipes.train_derived.train_derived` with a :class:`TrainWorkerContext` and an
engine factory: DDP (``ray.train.torch.prepare_model``) by default, DeepSpeed when the config has
a ``deepspeed`` section.

Evaluation (validation every epoch, test and prediction files after the last) runs on rank 0
alone, on the whole split, while the other ranks wait at the epoch's report; under ZeRO-3, whose
forward passes gather parameters from every rank, all ranks evaluate in lockstep (same result).
Sharding it across the ranks (and reducing the metrics) would divide its time by the number of
workers; not done, because ITM retrieval scores every image against every caption of the split.

Checkpoints: every rank reports its own scratch directory (rank 0: weights, optimiser, progress,
spec and config; every rank: its RNG state and, with DeepSpeed, its ZeRO shard); Ray Train merges
them into one checkpoint directory. Outputs (``config.yaml``, ``arch.json``, prediction files,
``train_result.json``) are written by rank 0 to a local directory and mirrored to
``<storage>/<run name>/outputs/`` after every report.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import ray.train
import ray.train.torch

from mmsearch.config import validate_config
from mmsearch.storage import StorageLocation, upload_file
from mmsearch.orchestration.train_resume import checkpoint_to_restore
from mmsearch.data.task_data import TaskData
from mmsearch.orchestration.ray_task_rows import warm_up
from mmsearch.orchestration.train_rows import worker_shard
from mmsearch.recipes.train_derived.recipe import open_train_data, train_derived
from mmsearch.recipes.train_derived.config import TrainDerivedConfig
from mmsearch.recipes.train_derived.engine import DerivedModel, LocalEngine

class TrainWorkerContext:
    """``RunContext`` of one Ray Train worker (``ray.train.report`` / ``get_checkpoint`` / ``get_context``)."""

    def __init__(self, outputs: StorageLocation | None = None, resume: dict[str, Any] | None = None) -> None:
        context = ray.train.get_context()
        self._resume = resume  # the driver's fallback for a damaged newest checkpoint (.train_resume)
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()
        self._outputs = outputs if self.rank == 0 else None
        self._output_dir = Path(tempfile.mkdtemp(prefix=f"mmsearch-train-rank{self.rank}-"))
        self._uploaded: dict[Path, tuple[int, int]] = {}
        self._stack = contextlib.ExitStack()
        self._restored: Path | None = None
        self._restore_checked = False

    @property
    def output_dir(self) -> Path:
        return self._output_dir

    def restored_checkpoint(self) -> Path | None:
        """The run's latest intact checkpoint (after a worker failure or a resubmission), as a local directory."""
        if not self._restore_checked:
            self._restore_checked = True
            checkpoint = checkpoint_to_restore(ray.train.get_checkpoint(), self._resume)
            if checkpoint is not None:
                self._restored = Path(self._stack.enter_context(checkpoint.as_directory()))
        return self._restored

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir is not None else None
        ray.train.report(metrics, checkpoint=checkpoint)  # a barrier: every rank reports every epoch
        self.upload_outputs()

    def upload_outputs(self) -> int:
        """Copy new or changed files of ``output_dir`` (not dot-names) to storage (rank 0); returns how many."""
        if self._outputs is None:
            return 0
        copied = 0
        for path in sorted(self._output_dir.rglob("*")):
            relative = path.relative_to(self._output_dir)
            if any(part.startswith(".") for part in relative.parts) or not path.is_file():
                continue
            stat = path.stat()
            if self._uploaded.get(relative) == (stat.st_mtime_ns, stat.st_size):
                continue
            upload_file(path, self._outputs.child(*relative.parts))
            self._uploaded[relative] = (stat.st_mtime_ns, stat.st_size)
            copied += 1
        return copied

    def close(self) -> None:
        try:
            self.upload_outputs()
        finally:
            self._stack.close()
            shutil.rmtree(self._output_dir, ignore_errors=True)


def ddp_engine(model: DerivedModel, cfg: TrainDerivedConfig, find_unused_parameters: bool = False) -> LocalEngine:
    """Plain torch on this worker's device (``ray.train.torch.get_device``), wrapped in DDP with several workers."""
    device = ray.train.torch.get_device()
    model.to(device)
    world = ray.train.get_context().get_world_size()
    wrapped = ray.train.torch.prepare_model(model, move_to_device=False, parallel_strategy="ddp",
                                            parallel_strategy_kwargs={"find_unused_parameters": find_unused_parameters})
    label = f"DDP x{world}" + (" (find_unused_parameters)" if find_unused_parameters else "") if world > 1 else "1 Ray Train worker"
    return LocalEngine(model, cfg, device, wrapped=wrapped, label=label)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """The function ``TorchTrainer`` runs on every worker (see :func:`mmsearch.orchestration.train.fit_derived`).

    ``loop_config``: ``config`` (the resolved config as a dict), ``outputs`` (the run's outputs
    directory in storage), ``resume`` (None, or the driver's fallback for a damaged newest
    checkpoint: :meth:`.train_resume.ResumePoint.loop_config`) and optionally ``task_data_factory`` (a picklable callable returning
    the ``TaskData``; default: open the config's data).
    """
    cfg = validate_config(TrainDerivedConfig, loop_config["config"], origin="train loop config")
    factory: Callable[[], TaskData] | None = loop_config.get("task_data_factory")
    # Ray Data's readers start importing while the data opens (a worker's first epoch at 1x: 6.2 s
    # when they started after it, bench/README.md); a store too small for Ray Data leaves them idle.
    warming = warm_up() if factory is None and cfg.data.regions == "stream" else None
    data = factory() if factory is not None else open_train_data(cfg.data)
    context = TrainWorkerContext(loop_config.get("outputs"), loop_config.get("resume"))
    shard = worker_shard(data, rank=context.rank, world_size=context.world_size, batch_size=cfg.train.batch_size,
                         seed=cfg.seed, drop_last=cfg.train.drop_last, warming=warming)
    if cfg.deepspeed is not None:
        from mmsearch.orchestration.deepspeed_engine import deepspeed_engine

        engine_factory = deepspeed_engine
    else:
        engine_factory = ddp_engine
    try:
        train_derived(cfg, context, data, train_shard=shard, engine_factory=engine_factory)
    finally:
        settle = getattr(shard, "settle", None)  # Ray Data's start, if training ended before it did
        if callable(settle):
            settle()
        context.close()


__all__ = ["TrainWorkerContext", "ddp_engine", "train_loop_per_worker"]
