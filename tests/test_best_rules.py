"""One notion of best (mmsearch.orchestration.summary): over all epochs; ties -> later epoch, first trial id."""
from __future__ import annotations

import math

from mmsearch.orchestration.summary import ExperimentSummary, TrialSummary, _rung_reached, best_of
from mmsearch.report.collect import best_of as report_best_of
from mmsearch.report.collect import rung_reached as report_rung_reached


def trial(trial_id: str, best: float | None) -> TrialSummary:
    return TrialSummary(trial_id, {}, "completed", 8, 8, best, 4, None, None)


def test_best_epoch_is_the_best_value_over_all_epochs_later_epoch_on_ties():
    history = [(1, 20.0), (2, 22.9), (3, math.nan), (4, 22.9), (5, 21.0)]
    assert best_of(history, "max") == (22.9, 4)
    assert best_of([(1, 3.0), (2, 1.0), (3, 1.0), (4, 2.0)], "min") == (1.0, 3)
    assert best_of([(1, math.inf), (2, math.nan)], "max") == (None, None)
    rows = [{"epoch": e, "val": v} for e, v in history]
    assert report_best_of(rows, "val", "max") == best_of(history, "max")  # the report agrees


def test_best_trial_on_ties_is_the_first_by_trial_id_and_rungs_are_ints():
    trials = [trial("abc_00002", 22.917), trial("abc_00000", 22.917), trial("abc_00001", 22.917), trial("abc_00003", None)]
    summary = ExperimentSummary("e", "/e", "val_metric", "max", 8, [2.0, 4.0], trials)
    assert summary.best_trial.trial_id == "abc_00000"
    assert ExperimentSummary("e", "/e", "loss", "min", 8, [], trials).best_trial.trial_id == "abc_00000"
    for reached in (_rung_reached(3, [2.0, 4.0], 8), _rung_reached(8, [2.0, 4.0], 8), report_rung_reached(5, [2.0, 4.0], 8)):
        assert type(reached) is int
    assert (_rung_reached(3, [2.0, 4.0], 8), _rung_reached(8, [2.0, 4.0], 8)) == (2, 8)
