"""ASHA whose rung records survive ``Tuner.restore`` (Ray does not restore them: ray-project/ray#30838).

Ray pickles the scheduler into ``tuner.pkl`` when the Tuner is created, empty, and restores
that empty copy on resume: every rung forgets what it saw, so the first trials to reach a rung
after a resume are promoted without comparison and a resumed experiment stops different
trials than an uninterrupted one. :class:`PersistentASHAScheduler` writes its rung records
(per bracket, keyed by trial id), each trial's bracket, and each stop decision to
``mmsearch_state/asha_state.json`` in the experiment directory whenever they change (atomically, through
the experiment's own filesystem, S3 included), and reloads that file the first time Tune uses
it, so a resumed experiment makes the decisions an uninterrupted one would. A trial that was
stopped but resumed anyway (the driver died before Tune saved its status) is stopped again.
"""
from __future__ import annotations

import json
import logging
import math
from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from mmsearch.orchestration.asha import TIME_ATTR
from mmsearch.storage import StorageLocation, read_bytes, write_bytes

log = logging.getLogger(__name__)

# Kept in a subdirectory of the experiment: on resume Tune copies the experiment root's *.json
# files into its driver staging directory and re-uploads them on every state snapshot, which
# would overwrite a state file at the root with the copy taken at resume time.
STATE_FILE = "mmsearch_state/asha_state.json"
_FORMAT = "mmsearch.asha_state/1"


class AshaStateError(RuntimeError):
    """The persisted ASHA state cannot be used with these settings."""


class PersistentASHAScheduler(AsyncHyperBandScheduler):
    """Ray's ASHA plus persistence of its rung records to ``state`` (a JSON file location)."""

    def __init__(
        self,
        *,
        state: StorageLocation,
        metric: str,
        mode: str,
        max_t: int,
        grace_period: int,
        reduction_factor: float,
        brackets: int = 1,
    ) -> None:
        super().__init__(
            time_attr=TIME_ATTR,
            metric=metric,
            mode=mode,
            max_t=max_t,
            grace_period=grace_period,
            reduction_factor=reduction_factor,
            brackets=brackets,
            stop_last_trials=True,
        )
        self._state = state
        self._settings = {
            "time_attr": TIME_ATTR,
            "metric": metric,
            "mode": mode,
            "max_t": max_t,
            "grace_period": grace_period,
            "reduction_factor": reduction_factor,
            "brackets": brackets,
        }
        self._bracket_of: dict[str, int] = {}  # trial id -> bracket index
        self._stopped: dict[str, dict[str, Any]] = {}  # trial id -> {"rung", "epoch", "value"}
        self._loaded = False

    # -- persistence -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "settings": self._settings,
            "brackets": [
                [
                    {"milestone": milestone, "recorded": {tid: float(v) for tid, v in recorded.items()}}
                    for milestone, recorded in bracket._rungs
                ]
                for bracket in self._brackets
            ],
            "trial_bracket": dict(self._bracket_of),
            "stopped_by_asha": dict(self._stopped),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != _FORMAT:
            raise AshaStateError(f"{self._state.uri}: unknown format {state.get('format')!r}")
        if state["settings"] != self._settings:
            raise AshaStateError(
                f"{self._state.uri} was written with ASHA settings {state['settings']}, "
                f"but this experiment uses {self._settings}; resume with the original settings"
            )
        for bracket, saved in zip(self._brackets, state["brackets"], strict=True):
            for (milestone, recorded), rung in zip(bracket._rungs, saved, strict=True):
                if float(rung["milestone"]) != float(milestone):
                    raise AshaStateError(f"{self._state.uri}: rung {rung['milestone']} != {milestone}")
                recorded.clear()
                recorded.update({tid: float(v) for tid, v in rung["recorded"].items()})
        self._bracket_of = {tid: int(i) for tid, i in state["trial_bracket"].items()}
        self._stopped = dict(state["stopped_by_asha"])
        self._num_stopped = len(self._stopped)

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        raw = read_bytes(self._state, missing_ok=True)
        if raw is not None:
            self.load_state_dict(json.loads(raw))
            log.info(
                "restored ASHA rung records for %d trials (%d stopped) from %s",
                len(self._bracket_of),
                len(self._stopped),
                self._state.uri,
            )

    def _save(self) -> None:
        write_bytes(self._state, (json.dumps(self.state_dict(), indent=1) + "\n").encode())

    def _num_recorded(self) -> int:
        return sum(len(recorded) for b in self._brackets for _, recorded in b._rungs)

    # -- Tune scheduler hooks ----------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Accept TuneConfig's metric/mode when they agree with ours (Ray refuses any otherwise)."""
        self._ensure_loaded()
        return metric in (None, self._metric) and mode in (None, self._mode)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._ensure_loaded()
        known = self._bracket_of.get(trial.trial_id)
        if known is None:
            super().on_trial_add(tune_controller, trial)
            self._bracket_of[trial.trial_id] = self._brackets.index(self._trial_info[trial.trial_id])
            self._save()
        else:
            super().on_trial_add(tune_controller, trial)  # checks metric/mode
            self._trial_info[trial.trial_id] = self._brackets[known]

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        self._ensure_loaded()
        if trial.trial_id in self._stopped:
            return TrialScheduler.STOP  # decided before an interruption; decide the same again
        result = self._worst_if_not_finite(result)
        before = self._num_recorded()
        action = super().on_trial_result(tune_controller, trial, result)
        reached_max = result.get(TIME_ATTR, 0) >= self._max_t
        if action == TrialScheduler.STOP and not reached_max:
            self._stopped[trial.trial_id] = {
                "rung": self._rung_of(trial.trial_id),
                "epoch": result.get(TIME_ATTR),
                "value": float(result[self._metric]),
            }
            self._save()
        elif self._num_recorded() != before:
            self._save()
        return action

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._ensure_loaded()
        result = self._worst_if_not_finite(result)
        before = self._num_recorded()
        super().on_trial_complete(tune_controller, trial, result)
        if self._num_recorded() != before:
            self._save()

    def _worst_if_not_finite(self, result: dict) -> dict:
        """A None/NaN/inf metric (diverged training) counts as the worst value instead of crashing
        Ray's ASHA (``None``) or never being compared (``NaN``)."""
        value = result.get(self._metric)
        if self._metric not in result or (isinstance(value, (int, float)) and math.isfinite(value)):
            return result
        worst = -math.inf if self._mode == "max" else math.inf
        if value is not None and not isinstance(value, (int, float)):
            log.warning("metric %r of trial result is %r, not a number; ranked as the worst", self._metric, value)
        return {**result, self._metric: worst}

    def _rung_of(self, trial_id: str) -> float | None:
        """The highest milestone at which the trial has a record (where it was just judged)."""
        bracket = self._brackets[self._bracket_of[trial_id]]
        for milestone, recorded in bracket._rungs:  # descending
            if trial_id in recorded:
                return milestone
        return None

    @property
    def stopped_trials(self) -> dict[str, dict[str, Any]]:
        """Trials ASHA stopped: trial id -> {"rung", "epoch", "value"}."""
        return dict(self._stopped)

    def __getstate__(self) -> dict[str, Any]:
        # Pickled into tuner.pkl at Tuner creation; on restore the records come from the state file.
        state = self.__dict__.copy()
        state["_loaded"] = False
        return state


def load_asha_state(location: StorageLocation) -> dict[str, Any] | None:
    """The persisted state of an experiment (for summaries and reports), or None."""
    raw = read_bytes(location, missing_ok=True)
    return json.loads(raw) if raw is not None else None


__all__ = ["STATE_FILE", "AshaStateError", "PersistentASHAScheduler", "load_asha_state"]
