"""Live experiment metrics for the Ray dashboard, which has no Tune view.

:class:`TrialMetricsCallback` is a Tune ``Callback`` that exports, as ``ray.util.metrics``
gauges labelled by ``experiment`` and ``storage`` (the storage root the experiment writes to), the
Prometheus series that the shipped Grafana dashboard (``cluster/grafana/mmsearch_dashboard.json``)
plots:

- ``ray_mmsearch_tune_trials{experiment, storage, state}``: trials by state (:data:`STATES`);
- ``ray_mmsearch_tune_best_metric{experiment, storage, metric}``: the best value reported so far;
- ``ray_mmsearch_tune_trial_epochs{experiment, storage}``: epochs reported by all trials together;
- ``ray_mmsearch_tune_trial_failures{experiment, storage}``: trial failures (an exception, a lost
  node), and ``ray_mmsearch_tune_trial_retries{experiment, storage}``: the failures after which the
  trial was restored from its last checkpoint (the rest ended it as errored).

Everything is recomputed from Tune's own trial list at each publish (failures from Tune's
persisted per-trial count), so the values are right after a resume too. A terminated trial whose
last epoch is below ``max_t`` was stopped early (by ASHA: it is the only stopper this layer
installs); at ``max_t`` it finished.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Collection

from ray.tune import Callback

STATES = ("pending", "running", "stopped_by_asha", "finished", "errored")
# Prometheus names (Ray prefixes "ray_") -> the gauge's tag keys; the dashboard queries these.
GAUGES: dict[str, tuple[str, ...]] = {
    "mmsearch_tune_trials": ("experiment", "storage", "state"),
    "mmsearch_tune_best_metric": ("experiment", "storage", "metric"),
    "mmsearch_tune_trial_epochs": ("experiment", "storage"),
    "mmsearch_tune_trial_failures": ("experiment", "storage"),
    "mmsearch_tune_trial_retries": ("experiment", "storage"),
}
_DESCRIPTIONS = {
    "mmsearch_tune_trials": "Trials of an mmsearch Tune experiment, by state",
    "mmsearch_tune_best_metric": "Best value of the experiment's metric reported so far",
    "mmsearch_tune_trial_epochs": "Epochs reported by all trials of the experiment together",
    "mmsearch_tune_trial_failures": "Trial failures (exceptions, lost nodes), retried or not",
    "mmsearch_tune_trial_retries": "Trial failures after which the trial was restored from its last checkpoint",
}


def failures_and_retries(status: str, num_failures: int) -> tuple[int, int]:
    """A trial's failures and how many of them were retried: all but the last of an errored trial."""
    failures = max(int(num_failures or 0), 0)
    return failures, failures - 1 if status == "ERROR" and failures else failures


@dataclasses.dataclass(frozen=True)
class TrialCounts:
    pending: int = 0
    running: int = 0
    stopped_by_asha: int = 0
    finished: int = 0
    errored: int = 0
    best_metric: float | None = None
    trial_epochs: int = 0
    failures: int = 0
    retries: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def count_trials(trials: list[Any], *, metric: str, mode: str, max_t: int,
                 stopped_by_asha: Collection[str] | None = None) -> TrialCounts:
    """Classify Tune trials by state; the best value of ``metric`` so far; epochs, failures, retries.

    A terminated trial counts as stopped by ASHA when ASHA's own record (``stopped_by_asha``, trial
    ids: what the experiment summary reads too) names it; without a record, when it ended before ``max_t``."""
    counts = dict.fromkeys(STATES, 0)
    best: float | None = None
    epochs = failures = retries = 0
    for trial in trials:
        status = trial.status
        last_epoch = (trial.last_result or {}).get("epoch", 0) or 0
        if status == "ERROR":
            counts["errored"] += 1
        elif status == "TERMINATED":
            stopped = trial.trial_id in stopped_by_asha if stopped_by_asha is not None else last_epoch < max_t
            counts["stopped_by_asha" if stopped else "finished"] += 1
        elif status in ("RUNNING", "PAUSED"):
            counts["running"] += 1
        else:
            counts["pending"] += 1
        epochs += int(last_epoch)
        failed, retried = failures_and_retries(status, getattr(trial, "num_failures", 0))
        failures, retries = failures + failed, retries + retried
        value = (trial.metric_analysis.get(metric) or {}).get(mode)
        if isinstance(value, (int, float)) and math.isfinite(value):
            if best is None or (value > best if mode == "max" else value < best):
                best = float(value)
    return TrialCounts(**counts, best_metric=best, trial_epochs=epochs, failures=failures, retries=retries)


class TrialMetricsCallback(Callback):
    """Publishes :class:`TrialCounts` as Ray gauges, at most every ``min_interval_s`` while running."""

    def __init__(self, experiment: str, *, metric: str, mode: str, max_t: int, storage: str = "",
                 min_interval_s: float = 2.0, scheduler: Any = None) -> None:
        self.experiment = experiment
        self.scheduler = scheduler  # ASHA (PersistentASHAScheduler: its stopped_trials record), FIFO, or None
        self.storage = storage  # the storage root (URI), to tell apart experiments of the same name
        self.metric = metric
        self.mode = mode
        self.max_t = max_t
        self.min_interval_s = min_interval_s
        self.latest = TrialCounts()  # what was last exported
        self._gauges: dict[str, Any] | None = None
        self._last_publish = 0.0

    def _ensure_gauges(self) -> dict[str, Any]:
        if self._gauges is None:
            from ray.util.metrics import Gauge

            self._gauges = {name: Gauge(name, description=_DESCRIPTIONS[name], tag_keys=keys)
                            for name, keys in GAUGES.items()}
        return self._gauges

    def publish(self, trials: list[Any]) -> TrialCounts:
        scheduler = getattr(self, "scheduler", None)
        record = None if scheduler is None else getattr(scheduler, "stopped_trials", {})  # FIFO stops nothing
        counts = count_trials(trials, metric=self.metric, mode=self.mode, max_t=self.max_t, stopped_by_asha=record)
        gauges = self._ensure_gauges()
        tags = {"experiment": self.experiment, "storage": getattr(self, "storage", "")}
        for state in STATES:
            gauges["mmsearch_tune_trials"].set(getattr(counts, state), tags={**tags, "state": state})
        if counts.best_metric is not None:
            gauges["mmsearch_tune_best_metric"].set(counts.best_metric, tags={**tags, "metric": self.metric})
        gauges["mmsearch_tune_trial_epochs"].set(counts.trial_epochs, tags=tags)
        gauges["mmsearch_tune_trial_failures"].set(counts.failures, tags=tags)
        gauges["mmsearch_tune_trial_retries"].set(counts.retries, tags=tags)
        self.latest = counts
        self._last_publish = time.monotonic()
        return counts

    # -- Tune hooks --------------------------------------------------------------------------
    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if time.monotonic() - self._last_publish >= self.min_interval_s:
            self.publish(trials)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.publish(trials)

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.publish(trials)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.publish(trials)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.publish(trials)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.publish(trials)

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles callbacks into the experiment (tuner.pkl); gauges are recreated where used.
        state = self.__dict__.copy()
        state["_gauges"] = None
        return state


__all__ = ["GAUGES", "STATES", "TrialCounts", "TrialMetricsCallback", "count_trials", "failures_and_retries"]
