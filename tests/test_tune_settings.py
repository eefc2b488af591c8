"""The tune section of a job config: the shipped example validates against the real FuseMix recipe."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmsearch.config import ConfigError, load_config, read_yaml
from mmsearch.orchestration.experiment import plan_experiment
from mmsearch.orchestration.settings import TuneSettings
from mmsearch.recipes.fusemix.recipe import train_fusemix
from mmsearch.recipes.fusemix.config import FuseMixConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_shipped_fusemix_tune_config_plans_against_the_recipe():
    settings = load_config(TuneSettings, CONFIGS / "tune" / "fusemix_scenes.yaml")
    base = read_yaml(CONFIGS / "fusemix" / "scenes.yaml")
    plan = plan_experiment(train_fusemix, FuseMixConfig, base, settings, epochs_key="train.epochs")
    assert plan.max_t == base["train"]["epochs"] == 40
    assert plan.ladder.rungs == (5, 10, 20)
    assert plan.num_trials == 16
    assert set(plan.space.param_space) == set(settings.search_space)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("experiment_name=a/b", "experiment_name 'a/b' must be"),
        ("num_samples=0", "num_samples must be >= 1"),
        ("resources.cpus_per_trial=0", "cpus_per_trial must be > 0"),
        ("resources.gpus_per_trial=1.5", "above 1 it must be a whole number"),
        ("searcher=hyperband", "searcher"),
        ("scheduler.name=hyperband", "scheduler.name"),
        ("mode=maximize", "mode"),
        ("max_failures=-1", "max_failures must be >= 0"),
    ],
)
def test_invalid_settings_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TuneSettings, CONFIGS / "tune" / "fusemix_scenes.yaml", [override])
