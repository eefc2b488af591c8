"""How much of the cluster each trial gets: CPUs as configured, and by default a share of the GPUs.

``tune.resources.gpus_per_trial`` left unset (``null``) means "auto": on a cluster that reports
GPUs, the trials that can run at once (by CPUs, the ``max_concurrent_trials`` cap and the number
of planned trials) share them, each getting ``GPUs / trials`` (at most one whole GPU: a trial is one
process on one device), rounded down to Ray's resource precision so that they all fit. On a
cluster without GPUs it is 0. A number (0, 0.25, 1, 2) is used as given; the jobs' ``--cpu`` sets 0.

Pure functions of the cluster's resources (``ray.cluster_resources()``), so they are tested with
what a 1-GPU or an 8-GPU machine reports without one.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Literal, Mapping

from mmsearch.orchestration.settings import ResourceSettings, TuneSettings

RAY_RESOURCE_STEP = 1e-4  # Ray keeps fractional resources to 4 decimal places


@dataclasses.dataclass(frozen=True)
class ResourcePlan:
    cpus_per_trial: float
    gpus_per_trial: float
    cluster_gpus: float
    source: Literal["auto", "given"]  # derived here, or taken from tune.resources.gpus_per_trial
    sharing: int = 0  # auto with GPUs: the concurrent trials the GPUs were divided among

    @property
    def on_gpu(self) -> bool:
        return self.gpus_per_trial > 0

    def tune_resources(self) -> dict[str, float]:
        return {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial}

    def describe(self) -> str:
        """One line for the job's plan: where trials run and in which precision."""
        if self.on_gpu:
            how = (f"auto: {self.cluster_gpus:g} GPU(s) shared by {self.sharing} concurrent trial(s)"
                   if self.source == "auto" else "tune.resources.gpus_per_trial")
            return (f"Trials on GPU: {self.gpus_per_trial:g} GPU each ({how}); bf16 autocast where the GPU "
                    "supports it (recipe precision auto), fp32 otherwise; --cpu runs them on CPUs")
        if self.cluster_gpus > 0:
            return (f"Trials on CPU although the cluster has {self.cluster_gpus:g} GPU(s) "
                    "(--cpu or tune.resources.gpus_per_trial=0); fp32")
        return "Trials on CPU (the cluster reports no GPU); fp32"


def cpu_fit(resources: ResourceSettings, cluster: Mapping[str, float]) -> int:
    """Trials that fit at once by CPUs alone (after the Ray Data reserve); may be < 1."""
    cpus = float(cluster.get("CPU", 0))
    return math.floor((cpus - resources.reserve_cpus_for_data) / resources.cpus_per_trial + 1e-9)


def plan_trial_resources(resources: ResourceSettings, cluster: Mapping[str, float], *, num_trials: int) -> ResourcePlan:
    """Per-trial CPUs and GPUs for an experiment of ``num_trials`` trials on ``cluster``."""
    gpus = float(cluster.get("GPU", 0))
    if resources.gpus_per_trial is not None:
        return ResourcePlan(resources.cpus_per_trial, float(resources.gpus_per_trial), gpus, "given")
    if gpus <= 0:
        return ResourcePlan(resources.cpus_per_trial, 0.0, gpus, "auto")
    sharing = max(1, min(cpu_fit(resources, cluster), num_trials, resources.max_concurrent_trials or num_trials))
    share = min(1.0, gpus / sharing)
    share = math.floor(share / RAY_RESOURCE_STEP + 1e-6) * RAY_RESOURCE_STEP
    return ResourcePlan(resources.cpus_per_trial, round(share, 4), gpus, "auto", sharing)


def reuse_actors(settings: TuneSettings, gpus_per_trial: float | None, *, one_machine: bool) -> bool:
    """Whether a finished trial's process runs the next trial: when ``settings.reuse_actors`` says
    so, the trials get no GPU (a GPU trial's process exits, its GPU memory with it) and Ray runs on
    this one machine (``cluster.on_one_machine``). On a cluster a node can be lost while its process
    is being handed to the next trial, and Ray Tune then errors that trial whatever ``max_failures``
    allows (tests/test_tune_reuse_loss.py); a lost fresh process is retried."""
    return settings.reuse_actors and not gpus_per_trial and one_machine


__all__ = ["RAY_RESOURCE_STEP", "ResourcePlan", "cpu_fit", "plan_trial_resources", "reuse_actors"]
