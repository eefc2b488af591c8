"""Everything a report shows, gathered from an experiment directory in storage (no Ray import).

:func:`collect_experiment` returns an :class:`ExperimentData`: the experiment's settings and one
:class:`TrialData` per trial with its per-epoch history and, for search trials, the
architecture probabilities recorded every epoch (``arch_history.json``). The per-trial summary
fields (stop reason, rung reached, best metric) follow the rules of
``mmsearch.orchestration.summary`` exactly (stop reasons from Tune's trial status and the
persisted ASHA decisions, not guessed from curves), so the report agrees with
``experiment_summary.json``; they are recomputed here so that a running experiment, whose
summary file is not written yet, is reported as it is now.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from mmsearch.recipes.context import EPOCH_KEY as TIME_ATTR  # the fidelity unit ("epoch") every report carries
from mmsearch.storage import StorageLocation, read_bytes, resolve_storage
from mmsearch.report import tune_files as tf
STOP_REASONS = ("completed", "stopped_by_asha", "stopped", "errored", "unfinished")


class ReportError(RuntimeError):
    """The location holds no experiment a report can be built from; the message says why."""


@dataclasses.dataclass(frozen=True)
class TrialData:
    trial_id: str
    config: dict[str, Any]  # the sampled parameters (dotted keys)
    status: str  # Tune's: PENDING / RUNNING / PAUSED / TERMINATED / ERROR (UNKNOWN before Tune's first snapshot)
    stop_reason: str  # one of STOP_REASONS
    rung_reached: int | None
    last_epoch: int | None
    best_metric: float | None
    best_epoch: int | None
    history: list[dict[str, Any]]  # one report per epoch, epoch order
    location: StorageLocation | None  # the trial's directory
    checkpoint: str | None  # URI of the latest checkpoint directory
    error: str | None = None
    arch_history: dict[str, Any] | None = None  # search trials: {"epochN": spec dict with probs}
    checkpoints: tuple[str, ...] = ()  # URIs of the checkpoint directories in storage, oldest first

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(epochs, values) of a reported number, skipping epochs where it is missing or not finite."""
        epochs, values = [], []
        for row in self.history:
            value = row.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                epochs.append(int(row[TIME_ATTR]))
                values.append(float(value))
        return epochs, values

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


@dataclasses.dataclass(frozen=True)
class ExperimentData:
    name: str
    location: StorageLocation
    metric: str
    mode: str  # "max" | "min"
    max_t: int
    rungs: list[float]
    spec: dict[str, Any]  # mmsearch_state/experiment_spec.json
    trials: list[TrialData]

    @property
    def best_trial(self) -> TrialData | None:
        scored = [t for t in self.trials if t.best_metric is not None]
        if not scored:
            return None
        # Ties: the first by trial id (mmsearch.orchestration.summary's rule).
        return (max if self.mode == "max" else min)(sorted(scored, key=lambda t: t.trial_id), key=lambda t: t.best_metric)

    @property
    def kind(self) -> str:
        """``search`` (architecture probabilities recorded), ``fusemix`` (retrieval + temperature) or ``generic``."""
        if any(t.arch_history for t in self.trials):
            return "search"
        keys = {key for t in self.trials for row in t.history for key in row}
        if "temperature" in keys and any(k.startswith("val_i2t_r") for k in keys):
            return "fusemix"
        return "generic"

    @property
    def finished(self) -> bool:
        return bool(self.trials) and all(t.stop_reason != "unfinished" for t in self.trials)

    def count(self, stop_reason: str) -> int:
        return sum(t.stop_reason == stop_reason for t in self.trials)


def open_location(location_or_uri: StorageLocation | str, endpoint_url: str | None = None) -> StorageLocation:
    if isinstance(location_or_uri, StorageLocation):
        return location_or_uri
    return resolve_storage(str(location_or_uri), endpoint_url)


def collect_experiment(location_or_uri: StorageLocation | str, endpoint_url: str | None = None) -> ExperimentData:
    """Read a finished or running experiment from its directory (local path or ``s3://`` URI)."""
    location = open_location(location_or_uri, endpoint_url)
    spec = tf.read_json(location.child(tf.SPEC_FILE))
    if not isinstance(spec, dict):
        raise ReportError(f"{location.uri} is not an mmsearch experiment directory (no readable {tf.SPEC_FILE})")
    metric, mode = str(spec["metric"]), str(spec["mode"])
    max_t, rungs = int(spec["max_t"]), [float(r) for r in spec.get("rungs", [])]
    asha = tf.read_json(location.child(tf.ASHA_STATE_FILE))
    stopped = asha.get("stopped_by_asha", {}) if isinstance(asha, dict) else {}

    states = tf.tune_trial_states(location)
    entries = tf.list_dir(location)
    dirs = {name for name, is_dir in entries.items() if is_dir}
    by_id: dict[str, str | None] = {tid: s["dirname"] for tid, s in states.items()}
    for name in sorted(dirs):  # trial directories Tune's snapshot does not list yet
        trial_id = tf.trial_id_from_dirname(name)
        if trial_id is not None and by_id.get(trial_id) is None:
            by_id[trial_id] = name

    trials = []
    for trial_id in sorted(by_id):
        state = states.get(trial_id, {"status": "UNKNOWN", "config": {}, "error_file": None})
        dirname = by_id[trial_id]
        trial_dir = location.child(dirname) if dirname and dirname in dirs else None
        trials.append(_trial(trial_id, state, trial_dir, metric, mode, max_t, rungs, stopped))
    return ExperimentData(
        name=location.uri.rstrip("/").rsplit("/", 1)[-1],
        location=location,
        metric=metric,
        mode=mode,
        max_t=max_t,
        rungs=rungs,
        spec=spec,
        trials=trials,
    )


def _trial(
    trial_id: str,
    state: dict[str, Any],
    trial_dir: StorageLocation | None,
    metric: str,
    mode: str,
    max_t: int,
    rungs: list[float],
    stopped: dict[str, Any],
) -> TrialData:
    history: list[dict[str, Any]] = []
    entries: dict[str, bool] = {}
    error = arch_history = None
    config = dict(state["config"])
    if trial_dir is not None:
        entries = tf.list_dir(trial_dir)
        history = tf.by_epoch(tf.read_results(trial_dir), TIME_ATTR)
        if not config:
            params = tf.read_json(trial_dir.child("params.json"))
            config = params if isinstance(params, dict) else {}
        if state["status"] == "ERROR" or "error.txt" in entries:
            raw = read_bytes(trial_dir.child(state.get("error_file") or "error.txt"), missing_ok=True)
            error = tf.short_error(raw.decode("utf-8", errors="replace")) if raw else None
        if "arch_history.json" in entries:
            loaded = tf.read_json(trial_dir.child("arch_history.json"))
            arch_history = loaded if isinstance(loaded, dict) and loaded else None
    checkpoints = tf.checkpoint_names(entries)
    last_epoch = int(history[-1][TIME_ATTR]) if history else None
    best, best_epoch = best_of(history, metric, mode)
    return TrialData(
        trial_id=trial_id,
        config=config,
        status=state["status"],
        stop_reason=stop_reason(state["status"], trial_id, last_epoch, max_t, stopped),
        rung_reached=rung_reached(last_epoch, rungs, max_t),
        last_epoch=last_epoch,
        best_metric=best,
        best_epoch=best_epoch,
        history=history,
        location=trial_dir,
        checkpoint=trial_dir.child(checkpoints[-1]).uri if trial_dir is not None and checkpoints else None,
        error=error,
        arch_history=arch_history,
        checkpoints=tuple(trial_dir.child(c).uri for c in checkpoints) if trial_dir is not None else (),
    )


def best_of(history: list[dict[str, Any]], metric: str, mode: str) -> tuple[float | None, int | None]:
    """Best finite value of ``metric`` and its epoch (the later epoch on ties, as the summary and Ray's retention;
    a search's warm-up epochs do not count, as in the summary)."""
    best: tuple[float, int] | None = None
    for row in sorted(history, key=lambda r: int(r[TIME_ATTR])):
        if row.get("warmup") == 1:
            continue
        value = row.get(metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        if best is None or (value >= best[0] if mode == "max" else value <= best[0]):
            best = (float(value), int(row[TIME_ATTR]))
    return (best[0], best[1]) if best else (None, None)


def rung_reached(last_epoch: int | None, rungs: list[float], max_t: int) -> int | None:
    """Highest rung (or ``max_t``) the trial got to; None before the first rung and for FIFO."""
    if last_epoch is None or not rungs:
        return None
    reached = [r for r in [*rungs, max_t] if last_epoch >= r]
    return int(reached[-1]) if reached else None


def stop_reason(status: str, trial_id: str, last_epoch: int | None, max_t: int, stopped: dict[str, Any]) -> str:
    if status == "ERROR":
        return "errored"
    if status != "TERMINATED":
        return "unfinished"  # pending, running or paused (or the driver died)
    if trial_id in stopped:
        return "stopped_by_asha"
    return "completed" if last_epoch is not None and last_epoch >= max_t else "stopped"


__all__ = [
    "STOP_REASONS",
    "ExperimentData",
    "ReportError",
    "TrialData",
    "best_of",
    "collect_experiment",
    "open_location",
    "rung_reached",
    "stop_reason",
]
