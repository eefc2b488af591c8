"""Live experiment metrics for the Ray dashboard, which has no Tune view.

:class:`TrialMetricsCallback` is a Tune ``Callback`` that counts trials by state and tracks the
best metric so far, and exports both as ``ray.util.metrics`` gauges (Prometheus names
``ray_mmsearch_tune_trials{experiment, state}`` and ``ray_mmsearch_tune_best_metric{experiment,
metric}``), which the dashboard's Metrics page (Grafana) and any Prometheus scraper show.

Counts are recomputed from Tune's own trial list at each publish, so they are right after a
resume too. A terminated trial whose last epoch is below ``max_t`` was stopped early (by ASHA:
it is the only stopper this layer installs); at ``max_t`` it finished.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

from ray.tune import Callback

STATES = ("pending", "running", "stopped_by_asha", "finished", "errored")


@dataclasses.dataclass(frozen=True)
class TrialCounts:
    pending: int = 0
    running: int = 0
    stopped_by_asha: int = 0
    finished: int = 0
    errored: int = 0
    best_metric: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def count_trials(trials: list[Any], *, metric: str, mode: str, max_t: int) -> TrialCounts:
    """Classify Tune trials by state and find the best value of ``metric`` reported so far."""
    counts = dict.fromkeys(STATES, 0)
    best: float | None = None
    for trial in trials:
        status = trial.status
        if status == "ERROR":
            counts["errored"] += 1
        elif status == "TERMINATED":
            last_epoch = (trial.last_result or {}).get("epoch", 0) or 0
            counts["finished" if last_epoch >= max_t else "stopped_by_asha"] += 1
        elif status in ("RUNNING", "PAUSED"):
            counts["running"] += 1
        else:
            counts["pending"] += 1
        value = (trial.metric_analysis.get(metric) or {}).get(mode)
        if isinstance(value, (int, float)) and math.isfinite(value):
            if best is None or (value > best if mode == "max" else value < best):
                best = float(value)
    return TrialCounts(**counts, best_metric=best)


class TrialMetricsCallback(Callback):
    """Publishes :class:`TrialCounts` as Ray gauges, at most every ``min_interval_s`` while running."""

    def __init__(self, experiment: str, *, metric: str, mode: str, max_t: int, min_interval_s: float = 2.0) -> None:
        self.experiment = experiment
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

            self._gauges = {
                "trials": Gauge(
                    "mmsearch_tune_trials",
                    description="Trials of an mmsearch Tune experiment, by state",
                    tag_keys=("experiment", "state"),
                ),
                "best": Gauge(
                    "mmsearch_tune_best_metric",
                    description="Best value of the experiment's metric reported so far",
                    tag_keys=("experiment", "metric"),
                ),
            }
        return self._gauges

    def publish(self, trials: list[Any]) -> TrialCounts:
        counts = count_trials(trials, metric=self.metric, mode=self.mode, max_t=self.max_t)
        gauges = self._ensure_gauges()
        for state in STATES:
            gauges["trials"].set(getattr(counts, state), tags={"experiment": self.experiment, "state": state})
        if counts.best_metric is not None:
            gauges["best"].set(counts.best_metric, tags={"experiment": self.experiment, "metric": self.metric})
        self.latest = counts
        self._last_publish = time.monotonic()
        return counts

    # -- Tune hooks --------------------------------------------------------------------------
    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if time.monotonic() - self._last_publish >= self.min_interval_s:
            self.publish(trials)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
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


__all__ = ["STATES", "TrialCounts", "TrialMetricsCallback", "count_trials"]
