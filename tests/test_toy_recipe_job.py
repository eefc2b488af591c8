"""A recipe added by one test module (the toy recipe, ``RECIPES["toy"]``) runs as a Tune job through
the generic job code: config, smoke-test overrides, data (none), trials named after the recipe,
best trial, report; and the job validates its recipe config once, at its edge, and runs the
storage preflight once."""
from __future__ import annotations

import collections
import dataclasses
import importlib
import json

import pytest
import yaml
from test_orchestration_toy_recipe import ToyConfig, register_for_ray

from mmsearch.cli_parsers import JobCard
from mmsearch.orchestration.jobs import run_job
from mmsearch.orchestration.jobs.config import JobOptions
from mmsearch.orchestration.jobs.results import BEST_TRIAL_FILE
from mmsearch.orchestration.jobs.specs import recipe_job
from mmsearch.orchestration.jobs.trials import STARTS_DIR


def toy_job(tmp_path, epochs: int = 3, lrs: tuple = (0.1, 0.5)) -> tuple:
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump({
        "recipe": {"train": {"epochs": epochs}},
        "tune": {"experiment_name": "toy_job", "metric": "loss", "mode": "min", "storage_path": str(tmp_path / "runs"),
                 "search_space": {"train.lr": {"grid": list(lrs)}},
                 "scheduler": {"grace_period": 1, "reduction_factor": 2},
                 "resources": {"cpus_per_trial": 0.5, "reserve_cpus_for_data": 0}, "max_failures": 0},
    }))
    card = JobCard(name="tune_toy", description="toy trainings under ASHA", default_config=str(config), recipe="toy")
    return recipe_job(card), config


@dataclasses.dataclass
class Counts:
    validations: collections.Counter  # config class name -> validate_config calls in this process (the driver)
    space_values: int = 0  # of which: a search-space value checked in the base config
    preflights: list = dataclasses.field(default_factory=list)  # storage locations preflighted


@pytest.fixture
def counted(monkeypatch) -> Counts:
    """Count the driver's config validations (every ``validate_config`` builds one pydantic
    ``TypeAdapter``), its search-space value checks and its storage preflights."""
    import mmsearch.config
    from mmsearch.orchestration import search_space

    counts = Counts(collections.Counter())
    adapter, check_value = mmsearch.config.TypeAdapter, search_space._check_value_valid
    preflight = importlib.import_module("mmsearch.storage.preflight")  # the module (the package's attribute is the function)
    real_preflight = preflight._preflight

    def counting_adapter(cls):
        counts.validations[cls.__name__] += 1
        return adapter(cls)

    def counting_check(*args, **kwargs):
        counts.space_values += 1
        return check_value(*args, **kwargs)

    def counting_preflight(location):
        counts.preflights.append(location.uri)
        return real_preflight(location)

    monkeypatch.setattr(mmsearch.config, "TypeAdapter", counting_adapter)
    monkeypatch.setattr(search_space, "_check_value_valid", counting_check)
    monkeypatch.setattr(preflight, "_preflight", counting_preflight)
    return counts


def test_the_job_takes_everything_from_the_recipe_entry(tmp_path):
    spec, config = toy_job(tmp_path)
    assert (spec.config_cls, spec.epochs_key, spec.trial.__qualname__) == (ToyConfig, "train.epochs", "toy_trial")
    smoke = spec.load(JobOptions(smoke_test=True))
    assert smoke.recipe.train.epochs == 2 and smoke.tune.num_samples == 1 and smoke.dataset is None
    assert smoke.tune.experiment_name == "toy_job-smoke"
    outcome = run_job(spec, JobOptions(check_only=True))
    assert outcome.exit_code == 0 and outcome.experiment == str(tmp_path / "runs" / "toy_job")
    assert not (tmp_path / "runs" / "toy_job" / "experiment_summary.json").exists()  # nothing ran


def test_a_checked_job_validates_its_recipe_config_once_and_preflights_once(tmp_path, counted):
    spec, _ = toy_job(tmp_path)  # search space: train.lr in [0.1, 0.5]
    assert run_job(spec, JobOptions(check_only=True)).exit_code == 0
    assert counted.space_values == 2  # each search-space value, once, in the base config
    assert counted.validations["ToyConfig"] == 1 + counted.space_values  # the recipe config: once, at load
    assert counted.validations["TuneSettings"] == 1
    assert counted.preflights == [str(tmp_path / "runs" / "toy_job")]


@pytest.mark.slow
@pytest.mark.ray
def test_a_toy_recipe_runs_under_tune_through_the_job_code(ray_session, tmp_path, counted, capsys):
    register_for_ray()
    spec, _ = toy_job(tmp_path, epochs=2, lrs=(0.5,))  # one trial: the job path, not Tune's selection, is under test
    outcome = run_job(spec, JobOptions())
    printed = capsys.readouterr().out
    assert "Trial status:" in printed  # Tune's own table is printed, but not its last-epoch "Current best trial"
    assert "Current best trial" not in printed and "best trial " in printed  # only the summary's notion of best
    experiment = tmp_path / "runs" / "toy_job"
    assert outcome.exit_code == 0 and outcome.experiment == str(experiment)
    # On the driver, the recipe config is validated once (at load) plus the one search-space value,
    # not again by the plan or the run; the storage is preflighted once (the trial validates its
    # own config, base + sampled value, in its Ray worker).
    assert (counted.validations["ToyConfig"], counted.space_values) == (2, 1)
    assert counted.preflights == [str(experiment)]
    assert len(outcome.summary.trials) == 1
    best = json.loads((experiment / BEST_TRIAL_FILE).read_text())
    assert best["config"] == {"train.lr": 0.5} and best["epoch"] == 2
    assert best["value"] == pytest.approx(0.5 * (4 * 0.5**2) ** 2)  # f(w) = w^2 / 2 after 2 steps from w = 4
    trial_dirs = sorted(p for p in experiment.iterdir() if p.name.startswith("toy_trial_"))
    assert len(trial_dirs) == 1
    starts = [json.loads(p.read_text()) for p in experiment.glob(f"toy_trial_*/{STARTS_DIR}/*.json")]
    assert len(starts) == 1 and all(s["restored_from"] is None for s in starts)
    assert outcome.best_arch is None and outcome.report is not None
