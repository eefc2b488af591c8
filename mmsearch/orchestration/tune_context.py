"""Run a recipe as a Ray Tune trial: the ``RunContext`` over ``ray.tune`` and the trainable wrapper.

This is the one place that maps the recipe contract (``fn(config, context)``; one report per
epoch with an integer ``epoch``; checkpoints as plain directories) onto Ray Tune's V2-era
function API (``tune.report``, ``tune.get_checkpoint``, ``tune.Checkpoint``), so a Ray API
change touches only this file.

Inside a trial the output directory is the trial's working directory (Tune changes into it, on
whatever node the trial runs). After every report and when the recipe returns, the context
copies new or changed files from it to the trial's directory in the experiment's storage
(local, NFS or S3). Names starting with ``.`` stay local: that is where recipes keep scratch,
such as a checkpoint being assembled (Tune's own artifact sync would upload those too, once
per epoch, and never delete them).

Every report also carries :data:`CHECKPOINT_SCORE` (:func:`checkpoint_score`): the experiment's
metric, NaN for an epoch that cannot be the trial's best (``warmup: 1``); Ray's checkpoint
retention ranks by it, so it keeps the checkpoints of the epochs the summary can name as best.
"""
from __future__ import annotations

import contextlib
import logging
import math
import numbers
import os
import sys
from pathlib import Path
from typing import Any, Callable

from ray import tune

from mmsearch.config import config_to_dict, dump_config, validate_config
from mmsearch.orchestration.asha import TIME_ATTR
from mmsearch.orchestration.checkpoints import write_manifest
from mmsearch.orchestration.search_space import set_dotted
from mmsearch.recipes.context import WARMUP_KEY
from mmsearch.recipes.shared_data import ProcessCache
from mmsearch.storage import StorageLocation, upload_file

log = logging.getLogger(__name__)


# The result key Ray's checkpoint retention ranks by (``CheckpointConfig(checkpoint_score_attribute=...)``).
CHECKPOINT_SCORE = "checkpoint_score"


def checkpoint_score(metrics: dict[str, Any], metric: str) -> float:
    """The metric of an epoch that can be the trial's best, else NaN: a warm-up epoch
    (``WARMUP_KEY`` = 1), or a metric missing, not a number or not finite (the summary's rules).
    Ray ranks a NaN score below every number in either mode (``_CheckpointManager._get_checkpoint_score``),
    so ``num_to_keep`` never keeps a warm-up epoch's checkpoint over a selectable one."""
    value = metrics.get(metric)
    if metrics.get(WARMUP_KEY) == 1 or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return math.nan
    return float(value) if math.isfinite(value) else math.nan


class ReportError(ValueError):
    """A recipe reported metrics that break the contract (missing or non-increasing ``epoch``)."""


class TuneContext:
    """``RunContext`` for a recipe running as one Tune trial (rank 0 of 1)."""

    rank = 0
    world_size = 1

    def __init__(self, artifacts_to: StorageLocation | None = None, *, score_metric: str | None = None,
                 shared: ProcessCache | None = None) -> None:
        """``artifacts_to``: the trial's directory in storage, where ``output_dir`` is mirrored;
        ``score_metric``: the experiment's metric, reported again as :data:`CHECKPOINT_SCORE`;
        ``shared``: the worker process's cache of opened task data (recipes/shared_data.py)."""
        self.shared = shared
        chdir_enabled = os.environ.get("RAY_CHDIR_TO_TRIAL_DIR", "1") != "0"
        self._output_dir = Path.cwd() if chdir_enabled else Path(tune.get_context().get_trial_dir())
        self._artifacts_to = artifacts_to
        self._uploaded: dict[Path, tuple[int, int]] = {}  # relative path -> (mtime_ns, size) uploaded
        self._stack = contextlib.ExitStack()
        self._restored: Path | None = None
        self._restored_uri: str | None = None
        self._restore_checked = False
        self._last_epoch: int | None = None
        self._score_metric = score_metric

    @property
    def output_dir(self) -> Path:
        return self._output_dir

    @property
    def trial_id(self) -> str:
        return tune.get_context().get_trial_id()

    def restored_checkpoint(self) -> Path | None:
        """The latest checkpoint of this trial as a local directory (downloaded when on S3)."""
        if not self._restore_checked:
            self._restore_checked = True
            checkpoint = tune.get_checkpoint()
            if checkpoint is not None:
                self._restored = Path(self._stack.enter_context(checkpoint.as_directory()))
                scheme = "s3://" if checkpoint.filesystem.type_name == "s3" else ""
                self._restored_uri = scheme + checkpoint.path
        return self._restored

    @property
    def restored_from(self) -> str | None:
        """The restored checkpoint's URI in storage (``.../checkpoint_000003``), not its local copy."""
        self.restored_checkpoint()
        return self._restored_uri

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        epoch = metrics.get(TIME_ATTR)
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral):
            raise ReportError(f"every report needs an integer {TIME_ATTR!r} (the ASHA fidelity unit); got {epoch!r}")
        epoch = int(epoch)
        if self._last_epoch is not None and epoch <= self._last_epoch:
            raise ReportError(f"{TIME_ATTR!r} must increase at every report: {epoch} after {self._last_epoch}")
        self._last_epoch = epoch
        checkpoint = None
        if checkpoint_dir is not None:
            write_manifest(Path(checkpoint_dir), {**metrics, TIME_ATTR: epoch})  # lets a resume tell a whole checkpoint
            checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir))
        # Mirror the epoch's files first: when a scheduler stops the trial at this report (ASHA at
        # a rung, or at max_t), nothing after tune.report runs in this trial.
        self.upload_artifacts()
        result = {**metrics, TIME_ATTR: epoch}
        if self._score_metric is not None:
            result[CHECKPOINT_SCORE] = checkpoint_score(result, self._score_metric)
        # tune.report persists the checkpoint before it returns: the recipe may delete the directory.
        tune.report(result, checkpoint=checkpoint)

    def upload_artifacts(self) -> int:
        """Copy new or changed files of ``output_dir`` (not dot-names) to storage; returns how many."""
        if self._artifacts_to is None:
            return 0
        copied = 0
        for path in sorted(self._output_dir.rglob("*")):
            relative = path.relative_to(self._output_dir)
            if any(part.startswith(".") for part in relative.parts) or not path.is_file():
                continue
            stat = path.stat()
            version = (stat.st_mtime_ns, stat.st_size)
            if self._uploaded.get(relative) == version:
                continue
            upload_file(path, self._artifacts_to.child(*relative.parts))
            self._uploaded[relative] = version
            copied += 1
        return copied

    def close(self, *, best_effort: bool = False) -> None:
        """Upload the last artifacts and release a downloaded checkpoint copy.

        ``best_effort`` (the recipe already failed): an upload error is logged, not raised, so it
        cannot hide the recipe's own exception.
        """
        try:
            self.upload_artifacts()
        except Exception:
            if not best_effort:
                raise
            log.warning("could not upload the artifacts of a failed trial", exc_info=True)
        finally:
            self._stack.close()


def merge_trial_params(base_config: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The base config with Tune's sampled parameters (dotted keys) written into it."""
    merged = base_config
    for key, value in params.items():
        merged = set_dotted(merged, key, value)
    return merged


def as_tune_trainable(
    recipe_fn: Callable[..., Any],
    base_config: Any,
    config_cls: type,
    *,
    experiment: StorageLocation | None = None,
    score_metric: str | None = None,
) -> Callable[[dict[str, Any]], None]:
    """A Tune function trainable that validates each trial's config and runs ``recipe_fn`` on it.

    ``base_config`` is the validated base config (an instance of ``config_cls``) or its data.
    The trial's sampled parameters (``{"search.arch_lr": 0.003, "seed": 1}``) are merged into
    the base's data and validated into ``config_cls`` (the sampled values are what is new); the
    resolved config is written to the trial's ``config.yaml`` before the recipe starts. With
    ``experiment`` (the experiment directory in storage), the trial's output files are mirrored
    to its directory there. With ``score_metric`` (the experiment's metric) every report carries
    :data:`CHECKPOINT_SCORE` for Ray's checkpoint retention.
    """
    base = config_to_dict(base_config) if isinstance(base_config, config_cls) else dict(base_config)
    # Unpickled once per Tune worker process: a trial run in a finished trial's process
    # (tune.reuse_actors) gets the task data that trial opened when its data config is the same.
    shared = ProcessCache()

    def trainable(params: dict[str, Any]) -> None:
        cfg = validate_config(config_cls, merge_trial_params(base, params), origin=f"trial params {params}")
        trial_dir = Path(tune.get_context().get_trial_dir()).name
        context = TuneContext(experiment.child(trial_dir) if experiment is not None else None, score_metric=score_metric,
                              shared=shared)
        succeeded = False
        try:
            dump_config(cfg, context.output_dir / "config.yaml")
            recipe_fn(cfg, context=context)
            succeeded = True
        finally:
            context.close(best_effort=not succeeded)
            _release_gpu_memory()

    trainable.__name__ = getattr(recipe_fn, "__name__", "recipe")
    trainable.__qualname__ = trainable.__name__
    return trainable


def _release_gpu_memory() -> None:
    """Return cached CUDA memory at the end of a trial (a GPU trial's actor also exits: GPU trials never reuse actors)."""
    torch = sys.modules.get("torch")  # only if the recipe used torch
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


__all__ = ["CHECKPOINT_SCORE", "ReportError", "TuneContext", "as_tune_trainable", "checkpoint_score", "merge_trial_params"]
