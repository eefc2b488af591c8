"""Task data opened once per worker process (mmsearch/recipes/shared_data.py): the cache itself, and
Tune trials that run in a finished trial's process (``tune.reuse_actors``, the default for CPU
trials) getting the data it opened instead of opening it again."""
from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

from mmsearch.config import config_dataclass
from mmsearch.recipes.shared_data import ProcessCache, open_shared


class _Context:  # a run context with a cache, as Tune's is
    def __init__(self, shared=None) -> None:
        self.shared = shared


def test_an_equal_key_gets_the_same_object_and_another_key_replaces_it():
    cache, opened = ProcessCache(), []

    def opener(name):
        def build():
            opened.append(name)
            return {"data": name}
        return build

    first = cache.get_or_build(("search", {"root": "a"}), opener("a"))
    assert cache.get_or_build(("search", {"root": "a"}), opener("a again")) is first  # equal, not identical, key
    assert opened == ["a"] and cache.builds == 1
    second = cache.get_or_build(("search", {"root": "b"}), opener("b"))
    assert second == {"data": "b"} and cache.builds == 2
    assert cache.get_or_build(("search", {"root": "a"}), opener("a, third")) == {"data": "a, third"}  # one entry only
    assert opened == ["a", "b", "a, third"]


def test_a_failed_opening_keeps_nothing_and_the_next_run_opens_again():
    cache = ProcessCache()
    cache.get_or_build("k", lambda: "old")

    def broken():
        raise OSError("store unreadable")

    with pytest.raises(OSError, match="store unreadable"):
        cache.get_or_build("other", broken)
    assert cache.get_or_build("k", lambda: "new") == "new"  # the old entry was dropped before the failed opening


def test_without_a_cache_every_run_opens_its_own():
    builds = []
    for context in (None, _Context(), object()):
        open_shared(context, "k", lambda: builds.append(1))
    assert len(builds) == 3
    cache = ProcessCache()
    values = [open_shared(_Context(cache), "k", lambda: object()) for _ in range(3)]
    assert values[0] is values[1] is values[2] and cache.builds == 1


@config_dataclass
class DataTrain:
    lr: float = 0.1
    epochs: int = 1


@config_dataclass
class DataConfig:
    train: DataTrain = DataTrain()
    data_key: str = "scenes"
    openings_dir: str = ""  # every opening of the data leaves a file here


def data_recipe(cfg: DataConfig, context) -> None:
    def open_data() -> dict:
        (Path(cfg.openings_dir) / f"{os.getpid()}_{uuid.uuid4().hex[:8]}").touch()
        return {"opened_by": os.getpid()}

    data = open_shared(context, ("toy", cfg.data_key), open_data)
    context.report({"epoch": 1, "loss": cfg.train.lr, "pid": os.getpid(), "builds": context.shared.builds,
                    "opened_by": data["opened_by"], "data_id": id(data)})


@pytest.mark.ray
def test_trials_reusing_a_process_reuse_its_task_data(ray_session, tmp_path):
    import ray.cloudpickle

    from mmsearch.orchestration.experiment import run_experiment
    from mmsearch.orchestration.settings import ResourceSettings, SchedulerSettings, TuneSettings

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    settings = TuneSettings(
        experiment_name="shared_data", metric="loss", mode="min", storage_path=str(tmp_path),
        search_space={"train.lr": {"grid": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}}, scheduler=SchedulerSettings(name="fifo"),
        resources=ResourceSettings(cpus_per_trial=1, reserve_cpus_for_data=0.0), max_failures=0,
    )
    assert settings.reuse_actors  # the default for CPU trials
    openings = tmp_path / "openings"
    openings.mkdir()
    outcome = run_experiment(data_recipe, DataConfig, {"openings_dir": str(openings)}, settings, epochs_key="train.epochs", verbose=0)
    metrics = [r.metrics for r in outcome.results]
    assert len(metrics) == 6 and not outcome.results.errors
    by_pid: dict[int, list[dict]] = {}
    for m in metrics:
        by_pid.setdefault(m["pid"], []).append(m)
    # Six trials on two slots ran in fewer processes than trials; in each, the data was opened once,
    # by that process, and every later trial there got the same object.
    assert len(by_pid) < 6, sorted(by_pid)
    assert sorted(int(f.name.split("_")[0]) for f in openings.iterdir()) == sorted(by_pid)  # one opening per process
    for pid, trials in by_pid.items():
        assert {m["builds"] for m in trials} == {1} and {m["opened_by"] for m in trials} == {pid}, trials
        assert len({m["data_id"] for m in trials}) == 1, trials
