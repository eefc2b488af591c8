"""One notion of best (mmsearch.orchestration.summary): over all epochs; ties -> later epoch, first trial id."""
from __future__ import annotations

import math

import pytest

from mmsearch.metrics.selection import is_new_best
from mmsearch.orchestration.summary import ExperimentSummary, TrialSummary, _rung_reached, best_of, metric_history
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


def test_a_searchs_warm_up_epochs_do_not_count_for_best():
    """The smoke search: trial 0 scored 22.9 in its warm-up epoch (architecture weights untrained)
    and 20.8 after it; its best_arch.json is epoch 2's, so its best is 20.8 at epoch 2, not 22.9."""
    pandas = pytest.importorskip("pandas")
    rows = [{"epoch": 1, "warmup": 1, "val_metric": 22.9}, {"epoch": 2, "warmup": 0, "val_metric": 20.8}]
    history = metric_history(pandas.DataFrame(rows), rows[-1], "val_metric")
    assert history == [(2, 20.8)] and best_of(history, "max") == (20.8, 2)
    assert report_best_of(rows, "val_metric", "max") == (20.8, 2)  # the report agrees
    assert metric_history(None, rows[0], "val_metric") == []  # only a warm-up result: no best yet
    plain = [{"epoch": 1, "loss": 3.0}, {"epoch": 2, "loss": 2.0}]  # no warm-up column
    assert metric_history(pandas.DataFrame(plain), plain[-1], "loss") == [(1, 3.0), (2, 2.0)]


def test_the_outcomes_best_result_is_the_summarys_best_trial():
    from types import SimpleNamespace

    from mmsearch.orchestration.experiment import ExperimentOutcome

    trials = [trial("abc_00000", 20.8), trial("abc_00001", 22.917)]  # 00000 scored 22.917 in warm-up only
    results = [SimpleNamespace(metrics={"trial_id": "abc_00000", "val_metric": 20.8}),
               SimpleNamespace(metrics={"trial_id": "abc_00001", "val_metric": 22.917}), SimpleNamespace(metrics=None)]
    outcome = ExperimentOutcome(results, ExperimentSummary("e", "/e", "val_metric", "max", 8, [], trials), None, False)
    assert outcome.best_result() is results[1]
    assert ExperimentOutcome(results, ExperimentSummary("e", "/e", "val_metric", "max", 8, [], []), None, False).best_result() is None


def test_every_recipe_picks_the_summarys_epoch_on_ties():
    """The search's best architecture, the derived training's best epoch and FuseMix's kept model
    are the epoch the experiment summary names (of equal scores the later, whose checkpoint Ray keeps)."""
    from mmsearch.nas.arch_spec import named_spec
    from mmsearch.recipes.search.state import SearchProgress
    from mmsearch.recipes.train_derived.state import TrainProgress

    scores = [(1, 20.0), (2, 22.9), (3, 21.0), (4, 22.9), (5, 22.0)]
    search, train = SearchProgress(), TrainProgress()
    for epoch, score in scores:
        search.consider(epoch, named_spec("mcan"), score, searching=True)
        train.record(epoch, {"epoch": epoch}, score)
    assert (search.best_metric, search.best_epoch) == (train.best_metric, train.best_epoch) == best_of(scores, "max") == (22.9, 4)
    # FuseMix's loop asks the same rule (its "none yet" is -inf); NaN never becomes the best
    assert is_new_best(22.9, 22.9) and is_new_best(1.0, -math.inf) and is_new_best(1.0, math.nan)
    assert not is_new_best(22.8, 22.9) and not is_new_best(math.nan, 1.0) and not is_new_best(math.nan, math.nan)
