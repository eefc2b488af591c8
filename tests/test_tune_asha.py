"""ASHA: settings validation, the rung ladder, and rung records that survive a restore (no Ray runtime).

The persistence tests drive the scheduler the way Tune's controller does (add trials, feed one
result at a time, complete stopped trials), interrupt it, rebuild it the way ``Tuner.restore``
does (unpickling the copy taken when the Tuner was created), and compare its decisions with an
uninterrupted run's, and with a resume that has no persisted state.
"""
from __future__ import annotations

import dataclasses
import json
import math
import pickle

import pytest
from ray.tune.schedulers import TrialScheduler
from ray.tune.schedulers.async_hyperband import _Bracket

from mmsearch.orchestration.asha import RungLadder, SchedulerConfigError, ray_milestones, validate_scheduler
from mmsearch.orchestration.asha_state import STATE_FILE, AshaStateError, PersistentASHAScheduler
from mmsearch.orchestration.settings import SchedulerSettings
from mmsearch.storage import StorageLocation, resolve_storage

# ---------------------------------------------------------------- ladder and validation


@pytest.mark.parametrize(("grace", "max_t", "rf", "bracket"), [(1, 8, 2, 0), (1, 10, 3, 0), (2, 32, 2, 1), (1, 100, 4, 0), (3, 3, 2, 0)])
def test_milestones_match_rays_brackets(grace, max_t, rf, bracket):
    ray_rungs = sorted(m for m, _ in _Bracket(grace, max_t, rf, bracket)._rungs)
    assert ray_milestones(grace, max_t, rf, bracket) == ray_rungs


def test_ladder_for_16_trials_over_8_epochs():
    ladder = validate_scheduler(
        SchedulerSettings(grace_period=1, reduction_factor=2), recipe_epochs=8, metric="loss", mode="min"
    )
    assert ladder == RungLadder(rungs=(1, 2, 4), max_t=8, reduction_factor=2)
    assert ladder.expected_alive(16) == [(1, 16), (2, 8), (4, 4), (8, 2)]
    # 16 trials x 1 epoch, 8 more for epoch 2, 4 x 2 epochs to 4, 2 x 4 epochs to 8
    assert ladder.expected_epochs(16) == 16 + 8 + 8 + 8
    text = ladder.describe(16)
    assert "epoch      1  rung" in text and "epoch      8  top rung (max_t)" in text
    assert "~2.0 of 16 trials expected to reach the top rung" in text
    assert "~40 trial-epochs vs 128 for FIFO (3.2x less)" in text


@pytest.mark.parametrize(
    ("settings", "epochs", "metric", "mode", "message"),
    [
        (SchedulerSettings(grace_period=0), 4, "loss", "min", r"grace_period must be >= 1"),
        (SchedulerSettings(reduction_factor=1.5), 4, "loss", "min", r"reduction_factor must be >= 2"),
        (SchedulerSettings(max_t=10), 4, "loss", "min", r"max_t=10 does not match the recipe's 4 epochs"),
        (SchedulerSettings(grace_period=5), 4, "loss", "min", r"max_t=4 is below scheduler.grace_period=5"),
        (SchedulerSettings(brackets=4), 4, "loss", "min", r"brackets must be between 1 and 3"),
        (SchedulerSettings(), 4, "", "min", r"tune.metric must name"),
        (SchedulerSettings(), 4, "loss", "maximize", r"tune.mode must be 'min' or 'max'"),
        (SchedulerSettings(), 0, "loss", "min", r"at least 1"),
    ],
)
def test_invalid_scheduler_settings_fail_with_the_setting_named(settings, epochs, metric, mode, message):
    with pytest.raises(SchedulerConfigError, match=message):
        validate_scheduler(settings, recipe_epochs=epochs, metric=metric, mode=mode)


def test_fifo_has_no_ladder_and_grace_equal_max_t_warns(caplog):
    assert validate_scheduler(SchedulerSettings(name="fifo"), recipe_epochs=4, metric="m", mode="max") is None
    ladder = validate_scheduler(SchedulerSettings(grace_period=4), recipe_epochs=4, metric="m", mode="max")
    assert ladder.rungs == () and "will stop no trial early" in caplog.text


# ---------------------------------------------------------------- persistence


@dataclasses.dataclass(frozen=True)
class FakeTrial:
    trial_id: str


def toy_loss(lr: float, epoch: int) -> float:
    return 0.5 * (4 * (1 - lr) ** epoch) ** 2


LRS = [0.3, 0.5, 0.1, 0.45, 0.2, 0.05, 0.4]  # run one after another, as with one trial at a time
MAX_T = 4


def make_scheduler(location: StorageLocation) -> PersistentASHAScheduler:
    return PersistentASHAScheduler(
        state=location, metric="loss", mode="min", max_t=MAX_T, grace_period=1, reduction_factor=2
    )


def run_trials(sched, trials, *, start_epochs=None, stop_after=None):
    """Drive ``sched`` like Tune's controller; returns {trial_id: epoch it stopped at} and whether cut short."""
    start_epochs = start_epochs or {}
    stopped, fed = {}, 0
    for trial in trials:
        for epoch in range(start_epochs.get(trial.trial_id, 0) + 1, MAX_T + 1):
            if stop_after is not None and fed == stop_after:
                return stopped, True
            result = {"epoch": epoch, "loss": toy_loss(float(trial.trial_id), epoch)}
            fed += 1
            if sched.on_trial_result(None, trial, result) == TrialScheduler.STOP:
                sched.on_trial_complete(None, trial, result)
                stopped[trial.trial_id] = epoch
                break
    return stopped, False


@pytest.fixture
def trials():
    return [FakeTrial(str(lr)) for lr in LRS]  # the trial id encodes its lr


def test_resumed_asha_decides_like_an_uninterrupted_one(tmp_path, trials):
    # Uninterrupted reference.
    reference = make_scheduler(StorageLocation(str(tmp_path / "ref" / STATE_FILE)))
    for t in trials:
        reference.on_trial_add(None, t)
    expected, _ = run_trials(reference, trials)
    early = {tid: e for tid, e in expected.items() if e < MAX_T}
    assert early, "the scenario must make ASHA stop some trials early"
    assert set(reference.stopped_trials) == set(early)

    # Interrupted after 11 results: 0.3 and 0.5 ran 4 epochs, 0.1 was stopped at epoch 1,
    # and 0.45 has reported (and checkpointed) epoch 2 of 4.
    location = StorageLocation(str(tmp_path / "exp" / STATE_FILE))
    first = make_scheduler(location)
    pickled_at_creation = pickle.dumps(first)  # what Tuner(...) writes into tuner.pkl
    for t in trials[:4]:  # the searcher had created four trials so far
        first.on_trial_add(None, t)
    stopped_before, cut = run_trials(first, trials[:4], stop_after=4 + 4 + 1 + 2)
    assert cut and stopped_before == {"0.3": 4, "0.5": 4, "0.1": 1}
    records_at_interruption = json.loads((tmp_path / "exp" / STATE_FILE).read_text())

    # Resume: Tuner.restore unpickles the empty scheduler; it reloads the persisted records.
    resumed = pickle.loads(pickled_at_creation)
    for t in trials:
        resumed.on_trial_add(None, t)
    assert resumed.state_dict()["brackets"] == records_at_interruption["brackets"]
    unfinished = [t for t in trials if t.trial_id not in stopped_before]
    stopped_after, _ = run_trials(resumed, unfinished, start_epochs={"0.45": 2})
    assert {**stopped_before, **stopped_after} == expected

    # Without the persisted state the same resume decides differently.
    amnesiac = pickle.loads(pickled_at_creation)
    amnesiac._state = StorageLocation(str(tmp_path / "nothing" / STATE_FILE))
    for t in trials:
        amnesiac.on_trial_add(None, t)
    forgot, _ = run_trials(amnesiac, unfinished, start_epochs={"0.45": 2})
    assert {**stopped_before, **forgot} != expected


def test_a_stopped_trial_that_comes_back_is_stopped_again(tmp_path):
    location = StorageLocation(str(tmp_path / STATE_FILE))
    sched = make_scheduler(location)
    good, bad = FakeTrial("0.3"), FakeTrial("0.1")
    for t in (good, bad):
        sched.on_trial_add(None, t)
    stopped, _ = run_trials(sched, [good, bad])
    assert stopped == {"0.3": MAX_T, "0.1": 1}  # 0.1 is worse than 0.3 at the first rung
    assert sched.stopped_trials["0.1"] == {"rung": 1, "epoch": 1, "value": pytest.approx(toy_loss(0.1, 1))}
    # The driver died before Tune recorded the stop; the trial is resumed and reports epoch 2.
    again = make_scheduler(location)
    again.on_trial_add(None, bad)
    assert again.on_trial_result(None, bad, {"epoch": 2, "loss": 0.0}) == TrialScheduler.STOP


def test_state_written_with_other_settings_is_refused(tmp_path, trials):
    location = StorageLocation(str(tmp_path / STATE_FILE))
    sched = make_scheduler(location)
    sched.on_trial_add(None, trials[0])
    other = PersistentASHAScheduler(
        state=location, metric="loss", mode="min", max_t=MAX_T, grace_period=2, reduction_factor=2
    )
    with pytest.raises(AshaStateError, match="different|written with ASHA settings"):
        other.on_trial_add(None, trials[0])


@pytest.mark.s3
def test_state_persists_through_s3(s3_server, trials):
    import boto3

    boto3.client("s3", endpoint_url=s3_server["endpoint"]).create_bucket(Bucket="asha-state")
    root = resolve_storage("s3://asha-state/experiments", s3_server["endpoint"])
    location = root.child("exp1", STATE_FILE)
    sched = make_scheduler(location)
    for t in trials[:3]:
        sched.on_trial_add(None, t)
    run_trials(sched, trials[:3])
    reloaded = make_scheduler(location)
    reloaded.on_trial_add(None, trials[0])
    assert reloaded.state_dict() == sched.state_dict()
    assert set(reloaded.stopped_trials) == {"0.1"}


@pytest.mark.parametrize("bad", [float("nan"), None, float("inf")])
def test_diverged_trials_rank_worst_instead_of_crashing_or_escaping(tmp_path, bad):
    sched = make_scheduler(StorageLocation(str(tmp_path / STATE_FILE)))
    good, diverged = FakeTrial("0.3"), FakeTrial("nan")
    for t in (good, diverged):
        sched.on_trial_add(None, t)
    assert sched.on_trial_result(None, good, {"epoch": 1, "loss": toy_loss(0.3, 1)}) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, diverged, {"epoch": 1, "loss": bad}) == TrialScheduler.STOP
    saved = json.loads((tmp_path / STATE_FILE).read_text())  # -inf survives the JSON round trip
    assert saved["brackets"][0][-1]["recorded"]["nan"] == -math.inf
