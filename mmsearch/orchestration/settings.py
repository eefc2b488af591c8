"""The ``tune`` section of a job config: how many trials, which searcher, ASHA, resources, storage.

Plain config dataclasses (no Ray import), so a job config can embed :class:`TuneSettings`
next to the recipe's own config and validate everything before Ray starts. The search space
is data too: ``{"search.arch_lr": {"loguniform": [1e-4, 1e-1]}, "seed": {"grid": [0, 1]}}``,
parsed and checked against the recipe's config class by :mod:`.search_space`.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Literal

from mmsearch.config import config_dataclass

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@config_dataclass
class SchedulerSettings:
    """Trial scheduler. ``asha`` stops poor trials at rungs; ``fifo`` runs every trial to the end.

    All times are in epochs (the recipe's reported ``epoch``, the fidelity unit).
    """

    name: Literal["asha", "fifo"] = "asha"
    grace_period: int = 1  # epochs every trial runs before it can be stopped
    reduction_factor: float = 2.0  # keep about 1/rf of the trials at each rung
    max_t: int | None = None  # top rung in epochs; None = the recipe's number of epochs
    brackets: int = 1  # ASHA brackets (1 = plain ASHA)


@config_dataclass
class ResourceSettings:
    """Resources per trial, and what to leave free for Ray Data's streaming tasks."""

    cpus_per_trial: float = 1.0
    # None (default): share the cluster's GPUs among the trials that run at once (none on a CPU
    # cluster; the jobs' --cpu sets 0); a number is used as given: 0.25 runs four trials per GPU.
    gpus_per_trial: float | None = None
    reserve_cpus_for_data: float = 1.0  # CPUs never given to trials (Ray Data read/map tasks)
    max_concurrent_trials: int | None = None  # optional cap below what the cluster allows

    def __post_init__(self) -> None:
        if self.cpus_per_trial <= 0:
            raise ValueError(f"resources.cpus_per_trial must be > 0 (got {self.cpus_per_trial})")
        gpus = self.gpus_per_trial
        if gpus is not None and gpus < 0:
            raise ValueError(f"resources.gpus_per_trial must be >= 0 (got {gpus})")
        if gpus is not None and gpus > 1 and gpus != int(gpus):
            raise ValueError(
                f"resources.gpus_per_trial={self.gpus_per_trial}: above 1 it must be a whole number of GPUs"
            )
        if self.reserve_cpus_for_data < 0:
            raise ValueError(f"resources.reserve_cpus_for_data must be >= 0 (got {self.reserve_cpus_for_data})")
        if self.max_concurrent_trials is not None and self.max_concurrent_trials < 1:
            raise ValueError(f"resources.max_concurrent_trials must be >= 1 (got {self.max_concurrent_trials})")


@config_dataclass
class TuneSettings:
    """Everything about running a recipe many times under Ray Tune."""

    experiment_name: str
    metric: str  # a key the recipe reports every epoch, e.g. "val/accuracy"
    mode: Literal["min", "max"]
    storage_path: str = "~/mmsearch_results"  # local dir, NFS mount, or s3://bucket/prefix
    s3_endpoint_url: str | None = None  # S3-compatible store; else AWS_ENDPOINT_URL / AWS default
    num_samples: int = 1  # samples of the space (each grid point is repeated num_samples times)
    searcher: Literal["random", "optuna"] = "random"
    searcher_seed: int | None = 0  # makes random sampling / TPE reproducible
    search_space: dict[str, Any] = dataclasses.field(default_factory=dict)
    scheduler: SchedulerSettings = SchedulerSettings()
    resources: ResourceSettings = ResourceSettings()
    max_failures: int = 2  # retries of a failing trial, each from its last checkpoint
    checkpoints_to_keep: int = 2  # per trial: the best by the metric, warm-up epochs last (Tune keeps the latest as well)
    # true (the default): a finished CPU trial's process runs the next trial (saves the ~4 s start
    # of a fresh Ray worker per trial: 90.6 % against 83.0 % efficiency, bench/README.md) where Ray
    # runs on one machine; on a cluster, and for GPU trials, every trial gets a fresh process: Ray
    # Tune errors a trial whose reused process is lost (its node gone) while being handed over,
    # whatever max_failures says, and a GPU trial's memory goes with its process. (It was off
    # while a stopped job could leave a trial in two directories; that came from SIGTERM killing
    # the driver before Tune saved its state, fixed in orchestration/stop_signal.py.)
    reuse_actors: bool = True

    def __post_init__(self) -> None:
        if not _NAME.match(self.experiment_name):
            raise ValueError(
                f"experiment_name {self.experiment_name!r} must be 1-128 characters of letters, digits, '.', '_', '-'"
            )
        if not self.metric:
            raise ValueError("metric must name a reported metric")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1 (got {self.num_samples})")
        if self.max_failures < 0:
            raise ValueError(f"max_failures must be >= 0 (got {self.max_failures})")
        if self.checkpoints_to_keep < 1:
            raise ValueError(f"checkpoints_to_keep must be >= 1 (got {self.checkpoints_to_keep})")
