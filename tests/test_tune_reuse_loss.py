"""Why trials on a cluster never reuse processes (``resource_plan.reuse_actors``): Ray Tune's
handling of a trial process that dies, pinned on the session's Ray.

A fresh process lost under a trial is retried, up to ``max_failures``. A reused process lost while
it is being handed to its next trial (``reset_config``; on a cluster, its node lost at that moment)
errors that trial at once, retries left or not: Tune counts the one loss twice, once as the actor's
failure, which requeues the trial, and once as the hand-over task's, which then finds the trial
pending and gives it up. When this test fails, Tune has changed; clusters may reuse processes again.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

MAX_FAILURES = 3


def _run(tmp_path: Path, *, reuse: bool, dies_in: str) -> list:
    """Three one-step trials, one at a time; the process of the trial with x == 1 exits the first
    time it reaches ``dies_in`` ("reset": handed over from trial 0; "step": training)."""
    from ray import tune

    from mmsearch.orchestration.credentials import keep_credentials_out_of_runtime_envs

    keep_credentials_out_of_runtime_envs()  # as every mmsearch experiment does before Tune starts
    marker = tmp_path / "died"

    class OneStep(tune.Trainable):
        def setup(self, config):
            self._maybe_die(config, "step")

        def step(self):
            return {"score": 1.0, "done": True}

        def reset_config(self, new_config):
            self._maybe_die(new_config, "reset")
            return True

        def save_checkpoint(self, checkpoint_dir):
            return None

        def load_checkpoint(self, checkpoint):
            pass

        @staticmethod
        def _maybe_die(config, where):
            if config["x"] == 1 and where == dies_in and not marker.exists():
                marker.touch()
                os._exit(1)  # as the process goes with a lost node

    tuner = tune.Tuner(
        tune.with_resources(OneStep, {"cpu": 1}),
        param_space={"x": tune.grid_search([0, 1, 2])},
        tune_config=tune.TuneConfig(reuse_actors=reuse, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "results"), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=MAX_FAILURES)),
    )
    results = tuner.fit()
    assert marker.exists()  # the process did die where asked
    return [result.error for result in results]


def test_a_lost_fresh_process_is_retried(ray_session, tmp_path):
    errors = _run(tmp_path, reuse=False, dies_in="step")
    assert errors == [None, None, None]


def test_a_reused_process_lost_at_hand_over_errors_its_trial_whatever_max_failures(ray_session, tmp_path):
    from ray.exceptions import RayActorError

    errors = _run(tmp_path, reuse=True, dies_in="reset")
    failed = [e for e in errors if e is not None]
    assert len(failed) == 1 and isinstance(failed[0], RayActorError), errors
