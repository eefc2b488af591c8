"""What a job leaves in the experiment directory after its trials: the best trial and architecture,
the retrained architecture's metrics (``--then-train``), and the report.

Files (all in the experiment directory, local or S3; written atomically):

* ``best_trial.json``: the best trial by the experiment's metric (one notion of best and one
  tie-break, :mod:`.summary`): id, sampled config, the metric at its best epoch (``searched``:
  every ``val_*`` metric of that epoch), ``checkpoint`` (that epoch's checkpoint, kept by the
  score-ordered retention), ``latest_checkpoint`` (where a resume continues) and the directory URI;
* ``best_arch.json`` (searches): the best trial's best architecture spec (its own
  ``best_arch.json``, which sits next to its checkpoints; else its latest checkpoint's
  ``arch.json``), loadable with ``mmsearch.nas.load_arch_spec`` and what
  ``jobs/train_derived.py --arch <experiment dir>`` trains;
* ``searched_vs_retrained.json`` (``--then-train``): ``{"searched": {...}, "retrained": {...}}``,
  metric name -> value, which the report draws; the training run itself is ``retrain/``;
* ``report/``: the plots and ``report.html`` (``mmsearch.report.build_report``).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from typing import Any, Iterable

from mmsearch.storage import StorageLocation, read_bytes, write_bytes
from mmsearch.orchestration.summary import ExperimentSummary, TrialSummary

log = logging.getLogger(__name__)

BEST_TRIAL_FILE = "best_trial.json"
BEST_ARCH_FILE = "best_arch.json"
COMPARISON_FILE = "searched_vs_retrained.json"  # read by mmsearch.report.build
RETRAIN_RUN = "retrain"  # the --then-train run's directory inside the experiment
CHECKPOINT_ARCH = "arch.json"  # inside search checkpoints


def _at(location: StorageLocation, uri: str) -> StorageLocation:
    """A location for ``uri`` in the same storage (same S3 endpoint) as ``location``."""
    return dataclasses.replace(location, uri=uri)


def _json(location: StorageLocation) -> Any | None:
    raw = read_bytes(location, missing_ok=True)
    return json.loads(raw) if raw is not None else None


def _write_json(location: StorageLocation, data: Any) -> None:
    write_bytes(location, (json.dumps(data, indent=2, default=_plain) + "\n").encode())


def _plain(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def epoch_metrics(results: Any, trial_id: str, epoch: int | None, prefix: str = "val_") -> dict[str, float]:
    """The finite ``prefix*`` metrics one trial reported at ``epoch`` (from Tune's ResultGrid)."""
    if epoch is None:
        return {}
    for result in results:
        frame = result.metrics_dataframe
        if frame is None or not {"trial_id", "epoch"} <= set(frame.columns):
            continue
        rows = frame[(frame["trial_id"] == trial_id) & (frame["epoch"] == epoch)]
        if len(rows):
            row = rows.iloc[-1]
            return {k: float(row[k]) for k in frame.columns if k.startswith(prefix) and _finite(row[k])}
    return {}


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def write_best_trial(location: StorageLocation, summary: ExperimentSummary, searched: dict[str, float]) -> dict[str, Any] | None:
    """Write ``best_trial.json``; returns its content (None when no trial reported the metric)."""
    best = summary.best_trial
    if best is None:
        return None
    record = {
        "experiment": summary.path,
        "trial_id": best.trial_id,
        "config": best.config,
        "metric": summary.metric,
        "mode": summary.mode,
        "value": best.best_metric,
        "epoch": best.best_epoch,
        "stop_reason": best.stop_reason,
        "searched": searched,
        "checkpoint": best.best_checkpoint_path,
        "latest_checkpoint": best.checkpoint_path,
        "trial_dir": best.path,
    }
    if best.best_checkpoint_path is None:
        log.warning("the checkpoint of trial %s's best epoch %s was not kept; best_trial.json names none",
                    best.trial_id, best.best_epoch)
    _write_json(location.child(BEST_TRIAL_FILE), record)
    return record


def write_best_arch(location: StorageLocation, best: TrialSummary) -> dict[str, Any] | None:
    """Copy the best trial's best architecture spec to ``<experiment>/best_arch.json``; returns the spec."""
    candidates: list[StorageLocation] = []
    if best.path:
        candidates.append(_at(location, best.path).child(BEST_ARCH_FILE))
    for uri in dict.fromkeys(u for u in (best.best_checkpoint_path, best.checkpoint_path) if u):
        checkpoint = _at(location, uri)
        candidates += [checkpoint.child(BEST_ARCH_FILE), checkpoint.child(CHECKPOINT_ARCH)]
    for candidate in candidates:
        spec = _json(candidate)
        if isinstance(spec, dict) and "enc" in spec and "dec" in spec:
            spec = {**spec, "source": f"{candidate.uri} (trial {best.trial_id})"}
            _write_json(location.child(BEST_ARCH_FILE), spec)
            return spec
    log.warning("the best trial %s left no architecture spec (looked for %s)", best.trial_id,
                ", ".join(c.uri for c in candidates))
    return None


def write_comparison(location: StorageLocation, searched: dict[str, float], handoff: dict[str, Any]) -> dict[str, Any]:
    """``searched_vs_retrained.json`` from the training handoff's result, in the report's format."""
    metric = handoff.get("metric")
    retrained = {
        "val_metric": handoff.get("retrained_val"),
        "best_val_metric": handoff.get("retrained_best_val"),
        f"test_{metric}": handoff.get("retrained_test"),
    }
    record = {
        "task": handoff.get("task"),
        "metric": metric,
        "searched": {k: v for k, v in searched.items() if _finite(v)},
        "retrained": {k: float(v) for k, v in retrained.items() if _finite(v)},
        "arch": handoff.get("arch"),
        "retrain_run": handoff.get("run"),
        "retrain_outputs": handoff.get("outputs"),
        "epochs": handoff.get("epochs"),
    }
    _write_json(location.child(COMPARISON_FILE), record)
    return record


def build_report_for(location: StorageLocation) -> str | None:
    """Build the experiment's report; returns where ``report.html`` went (None when it could not be built).

    A report is a summary of results that are already safe in storage: failing to draw one must not
    fail the job, so errors are printed with the command that rebuilds it.
    """
    from mmsearch.report import build_report

    try:
        return str(build_report(location))
    except Exception as exc:  # noqa: BLE001 -- see the docstring
        log.warning("could not build the report of %s", location.uri, exc_info=True)
        print(f"Report not built ({type(exc).__name__}: {exc}); rebuild it with: mmsearch report {location.uri}", flush=True)
        return None


def describe_counts(summary: ExperimentSummary, reasons: Iterable[str] = ("completed", "stopped_by_asha", "errored", "unfinished")) -> str:
    return ", ".join(f"{summary.count(r)} {r.replace('_', ' ')}" for r in reasons)


__all__ = [
    "BEST_ARCH_FILE",
    "BEST_TRIAL_FILE",
    "COMPARISON_FILE",
    "RETRAIN_RUN",
    "build_report_for",
    "describe_counts",
    "epoch_metrics",
    "write_best_arch",
    "write_best_trial",
    "write_comparison",
]
