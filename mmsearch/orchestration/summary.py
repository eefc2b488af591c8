"""The machine-readable summary of an experiment: one row per trial, and the best trial.

``experiment_summary.json`` in the experiment directory holds, per trial: id, sampled config,
stop reason (``completed`` / ``stopped_by_asha`` / ``errored`` / ``unfinished``; ``stopped`` for
a trial that ended early for another reason), the highest
rung reached (an int), the last epoch, the best value of the metric and its epoch, the best
epoch's checkpoint and the latest checkpoint, and its failures and retries (a trial restored after losing its node shows
``failures: 1, retries: 1``; the totals are at the top). Stop reasons come from the persisted ASHA decisions (``asha_state.json``),
not guessed from curves. :func:`summarize_experiment` rebuilds it from storage for a finished
or a running experiment.

One notion of best everywhere (this summary, ``best_trial.json``, the report):

* a trial's best is the best value of the metric over **all** its reported epochs (Ray's
  ``ResultGrid.get_best_result(scope="all")``, not the default ``scope="last"``); among epochs
  with the same value the **later** one, whose checkpoint Ray's score-ordered retention keeps
  (the best ``checkpoints_to_keep`` by ``tune_context.CHECKPOINT_SCORE`` plus the latest);
* epochs a trial marks as warm-up (``warmup: 1``: a search's epochs before its architecture
  weights train, whose architecture is not the one it outputs) do not count, so the best epoch
  is one whose architecture the trial's ``best_arch.json`` can be, and one whose checkpoint Ray
  keeps (their ``CHECKPOINT_SCORE`` is NaN, which Ray ranks below every number);
* the experiment's best trial is the trial with the best such value; among trials with the same
  value the **first by trial id** (the order Ray creates trials in, so ``get_best_result`` with
  ``scope="all"`` names the same trial).
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

from ray.tune import ExperimentAnalysis, ResultGrid

from mmsearch.orchestration.asha import TIME_ATTR
from mmsearch.orchestration.metrics import failures_and_retries
from mmsearch.recipes.context import WARMUP_KEY  # 1 in the results of epochs that cannot be a trial's best
from mmsearch.storage import StorageLocation, write_bytes

SUMMARY_FILE = "experiment_summary.json"


@dataclasses.dataclass(frozen=True)
class TrialSummary:
    trial_id: str
    config: dict[str, Any]  # the sampled parameters (dotted keys)
    stop_reason: str  # completed | stopped_by_asha | errored | unfinished | stopped
    rung_reached: int | None  # highest ASHA rung (or max_t) reached; None before the first rung / FIFO
    last_epoch: int | None
    best_metric: float | None
    best_epoch: int | None
    checkpoint_path: str | None  # latest checkpoint (URI): where a resume continues
    path: str | None  # the trial's directory (URI)
    error: str | None = None
    failures: int = 0  # times the trial failed (an exception, a lost node)
    retries: int = 0  # failures after which it was restored from its last checkpoint
    best_checkpoint_path: str | None = None  # the best epoch's checkpoint (URI); None if it was not kept


@dataclasses.dataclass(frozen=True)
class ExperimentSummary:
    experiment: str
    path: str
    metric: str
    mode: str
    max_t: int
    rungs: list[float]
    trials: list[TrialSummary]

    @property
    def best_trial(self) -> TrialSummary | None:
        scored = [t for t in self.trials if t.best_metric is not None]
        if not scored:
            return None
        pick = max if self.mode == "max" else min  # the first of equals: the lowest trial id (trials are sorted)
        return pick(sorted(scored, key=lambda t: t.trial_id), key=lambda t: t.best_metric)

    def count(self, stop_reason: str) -> int:
        return sum(t.stop_reason == stop_reason for t in self.trials)

    def to_dict(self) -> dict[str, Any]:
        best = self.best_trial
        return {
            "experiment": self.experiment,
            "path": self.path,
            "metric": self.metric,
            "mode": self.mode,
            "max_t": self.max_t,
            "rungs": self.rungs,
            "best": None
            if best is None
            else {"trial_id": best.trial_id, "config": best.config, "metric": best.best_metric, "epoch": best.best_epoch,
                  "checkpoint": best.best_checkpoint_path},
            "counts": {r: self.count(r) for r in ("completed", "stopped_by_asha", "errored", "unfinished", "stopped")},
            "failures": sum(t.failures for t in self.trials),
            "retries": sum(t.retries for t in self.trials),
            "trials": [dataclasses.asdict(t) for t in self.trials],
        }

    def table(self) -> str:
        """A plain-text table for the console."""
        lines = [f"{'trial':<14}{'stop reason':<17}{'rung':>6}{'epoch':>7}{'best ' + self.metric:>22}  config"]
        for t in self.trials:
            best = f"{t.best_metric:.5g}" if t.best_metric is not None else "-"
            rung = f"{t.rung_reached:g}" if t.rung_reached is not None else "-"
            lines.append(f"{t.trial_id:<14}{t.stop_reason:<17}{rung:>6}{t.last_epoch or '-':>7}{best:>22}  {t.config}")
        return "\n".join(lines)


def metric_history(frame: Any, last: dict[str, Any], metric: str) -> list[tuple[int, float]]:
    """``(epoch, value)`` of ``metric`` from a trial's results (``frame``: Ray's metrics dataframe, or
    only its ``last`` result), without the epochs it marks as warm-up (``WARMUP_KEY`` = 1)."""
    if frame is not None and metric in frame and TIME_ATTR in frame:
        warmup = frame[WARMUP_KEY] if WARMUP_KEY in frame else [0] * len(frame)
        return [(int(e), float(v)) for e, v, w in zip(frame[TIME_ATTR], frame[metric], warmup) if e == e and w != 1]
    if metric in last and TIME_ATTR in last and last.get(WARMUP_KEY) != 1:
        return [(int(last[TIME_ATTR]), float(last[metric]))]
    return []


def best_of(history: list[tuple[int, float]], mode: str) -> tuple[float | None, int | None]:
    """``(value, epoch)`` of the best finite value in ``(epoch, value)`` pairs; of equal values the later epoch."""
    best: tuple[float, int] | None = None
    for epoch, value in sorted(history):
        if not (isinstance(value, (int, float)) and math.isfinite(value)):
            continue
        if best is None or (value >= best[0] if mode == "max" else value <= best[0]):
            best = (float(value), int(epoch))
    return (best[0], best[1]) if best else (None, None)


def _rung_reached(last_epoch: int | None, rungs: list[float], max_t: int) -> int | None:
    if last_epoch is None or not rungs:
        return None
    reached = [r for r in [*rungs, max_t] if last_epoch >= r]
    return int(reached[-1]) if reached else None


def _checkpoint_at(result: Any, epoch: int | None) -> Any:
    """The kept checkpoint whose report was ``epoch`` (Ray keeps the best by the metric and the latest)."""
    if epoch is None:
        return None
    kept = list(result.best_checkpoints or [])
    if result.checkpoint is not None:
        kept.append((result.checkpoint, result.metrics or {}))
    for checkpoint, metrics in kept:
        if metrics.get(TIME_ATTR) == epoch:
            return checkpoint
    return None


def summarize_analysis(
    analysis: ExperimentAnalysis,
    *,
    experiment: str,
    path: str,
    metric: str,
    mode: str,
    max_t: int,
    rungs: list[float],
    stopped_by_asha: dict[str, Any],
    uri_prefix: str = "",
) -> ExperimentSummary:
    """Build the summary from Tune's experiment state and the persisted ASHA decisions.

    ``uri_prefix`` ("s3://" for S3) turns Tune's filesystem paths into URIs.
    """
    results = ResultGrid(analysis)  # one Result per trial, in the order of analysis.trials
    trials = []
    for trial, result in zip(analysis.trials, results, strict=True):
        last = trial.last_result or {}
        history = metric_history(result.metrics_dataframe, last, metric)
        last_epoch = int(last[TIME_ATTR]) if TIME_ATTR in last else None
        best, best_epoch = best_of(history, mode)
        failures, retries = failures_and_retries(trial.status, trial.num_failures)
        best_checkpoint = _checkpoint_at(result, best_epoch)
        trials.append(
            TrialSummary(
                trial_id=trial.trial_id,
                config=dict(trial.config),
                stop_reason=_stop_reason(trial.status, trial.trial_id, last_epoch, max_t, stopped_by_asha),
                rung_reached=_rung_reached(last_epoch, rungs, max_t),
                last_epoch=last_epoch,
                best_metric=best,
                best_epoch=best_epoch,
                checkpoint_path=uri_prefix + result.checkpoint.path if result.checkpoint is not None else None,
                path=uri_prefix + trial.path,
                error=_short_error(result.error),
                failures=failures,
                retries=retries,
                best_checkpoint_path=uri_prefix + best_checkpoint.path if best_checkpoint is not None else None,
            )
        )
    trials.sort(key=lambda t: t.trial_id)
    return ExperimentSummary(
        experiment=experiment, path=path, metric=metric, mode=mode, max_t=max_t, rungs=list(rungs), trials=trials
    )


def _stop_reason(status: str, trial_id: str, last_epoch: int | None, max_t: int, stopped: dict[str, Any]) -> str:
    if status == "ERROR":
        return "errored"
    if status != "TERMINATED":
        return "unfinished"  # pending, running or paused when the experiment was interrupted
    if trial_id in stopped:
        return "stopped_by_asha"
    return "completed" if last_epoch is not None and last_epoch >= max_t else "stopped"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _short_error(error: BaseException | None) -> str | None:
    """The exception's last line (``InjectedFailure: injected failure at epoch 1``), without colours."""
    if error is None:
        return None
    lines = [line.strip() for line in _ANSI.sub("", str(error)).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:500]


def write_summary(summary: ExperimentSummary, location: StorageLocation) -> None:
    """Write ``experiment_summary.json`` atomically (through pyarrow's filesystem on S3)."""
    text = json.dumps(summary.to_dict(), indent=2, default=str) + "\n"
    write_bytes(location.child(SUMMARY_FILE), text.encode())


__all__ = ["SUMMARY_FILE", "ExperimentSummary", "TrialSummary", "best_of", "summarize_analysis", "write_summary"]
