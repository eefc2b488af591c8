"""Ray Data's statistics actor outlives the trials when the driver creates it
(``mmsearch.orchestration.ray_data_stats``): made by a trial, it dies with the trial's placement
group, and the datasets still running elsewhere then fail to report to its empty successor."""
from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.ray

# Ray Data's own names for its per-cluster actor (Ray 2.60, ray.data._internal.stats)
STATS_ACTOR, NAMESPACE = "datasets_stats_actor", "_dataset_stats_actor"


def _stats_actor(ray):
    try:
        return ray.get_actor(STATS_ACTOR, namespace=NAMESPACE)
    except ValueError:
        return None


def _wait_for(condition, seconds: float = 20.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _a_trial_runs_a_dataset_and_ends(ray) -> None:
    """What a Tune trial or Ray Train worker does: a dataset run inside a placement group that
    captures its children, then the placement group removed as the trial ends."""
    from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    @ray.remote(num_cpus=0)
    def trial() -> int:
        import ray.data

        return sum(len(b["row"]) for b in ray.data.from_items([{"row": 0}]).map_batches(lambda b: b, num_cpus=0).iter_batches())

    group = placement_group([{"CPU": 0.01}])
    ray.get(group.ready(), timeout=60)
    strategy = PlacementGroupSchedulingStrategy(group, placement_group_capture_child_tasks=True)
    assert ray.get(trial.options(scheduling_strategy=strategy).remote(), timeout=120) == 1
    remove_placement_group(group)
    assert _wait_for(lambda: placement_group_table(group)["state"] == "REMOVED")


def test_the_stats_actor_made_by_the_driver_outlives_a_trials_placement_group(ray_session):
    from mmsearch.orchestration.ray_data_stats import create_ray_data_stats_actor_here

    ray = ray_session
    existing = _stats_actor(ray)
    if existing is not None:  # made earlier in this session: start as a cluster without one
        ray.kill(existing, no_restart=True)
        assert _wait_for(lambda: _stats_actor(ray) is None)

    # Without: the trial's dataset creates the actor inside its placement group; it dies with it
    _a_trial_runs_a_dataset_and_ends(ray)
    assert _wait_for(lambda: _stats_actor(ray) is None), "Ray Data's stats actor no longer dies with a trial's placement group"

    # With: the driver makes it; a trial's dataset reports to it, and it outlives the trial
    create_ray_data_stats_actor_here()
    made_here = _stats_actor(ray)
    assert made_here is not None
    _a_trial_runs_a_dataset_and_ends(ray)
    time.sleep(2)  # what the group held has been killed by now (the first actor was gone within this)
    alive = _stats_actor(ray)
    assert alive is not None and alive._actor_id == made_here._actor_id
    # (which datasets it lists is not asserted: a trial's reports are sent without waiting, and
    # those of a process killed with its placement group may never arrive)


def test_a_driver_that_cannot_run_a_dataset_warns_and_goes_on(ray_session, monkeypatch, caplog):
    import ray.data

    from mmsearch.orchestration import ray_data_stats

    def broken(*args, **kwargs):
        raise RuntimeError("no Ray Data here")

    monkeypatch.setattr(ray.data, "from_items", broken)
    with caplog.at_level("WARNING", logger=ray_data_stats.__name__):
        assert ray_data_stats.create_ray_data_stats_actor_here() is False
    assert "RuntimeError: no Ray Data here" in caplog.text and "ends with that trial" in caplog.text
    monkeypatch.undo()
    assert ray_data_stats.create_ray_data_stats_actor_here() is True


def test_only_experiments_whose_trials_may_run_datasets_pay_the_drivers_start():
    from types import SimpleNamespace as NS

    from mmsearch.data.task_data import TaskDataConfig
    from mmsearch.orchestration.jobs.trials import recipe_trial
    from mmsearch.orchestration.ray_data_stats import trials_may_run_datasets
    from mmsearch.recipes.fusemix.config import FuseMixDataConfig

    search, fusemix = recipe_trial("search"), recipe_trial("fusemix")
    assert trials_may_run_datasets(search, NS(data=TaskDataConfig(regions="stream")))  # streamed rows, under Tune
    assert not trials_may_run_datasets(search, NS(data=TaskDataConfig()))  # in memory
    assert trials_may_run_datasets(search, NS(data=TaskDataConfig()), varied=["data.regions", "seed"])  # the space may stream
    assert not trials_may_run_datasets(search, NS(data=TaskDataConfig()), varied=["seed", "search.arch_lr"])
    assert trials_may_run_datasets(fusemix, NS(data=FuseMixDataConfig(backend="ray")))
    assert not trials_may_run_datasets(fusemix, NS(data=FuseMixDataConfig()))
    assert not trials_may_run_datasets(lambda config, context: None, NS(data=TaskDataConfig(regions="stream")))  # no Ray Data wiring
