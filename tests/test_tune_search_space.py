"""Search spaces from config data: parsing, Tune domains, and errors that name the key (no Ray runtime)."""
from __future__ import annotations

import pytest
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
from ray.tune.search.sample import Categorical, Float, Integer
from test_orchestration_toy_recipe import ToyConfig

from mmsearch.config import ConfigError
from mmsearch.orchestration.search_space import (
    DISTRIBUTIONS,
    SearchSpaceError,
    build_searcher,
    parse_search_space,
    set_dotted,
)
from mmsearch.orchestration.tune_context import as_tune_trainable, merge_trial_params


def test_parses_every_distribution_into_tune_domains():
    space = parse_search_space(
        {
            "train.lr": {"loguniform": [1e-3, 0.5]},
            "train.noise": {"quniform": [0.0, 1.0, 0.25]},
            "train.width": {"choice": [8, 16]},
            "seed": {"grid": [0, 1, 2]},
        },
        ToyConfig,
    )
    lr, noise, width = (space.param_space[k] for k in ("train.lr", "train.noise", "train.width"))
    assert isinstance(lr, Float) and (lr.lower, lr.upper) == (1e-3, 0.5)
    assert isinstance(lr.get_sampler(), Float._LogUniform)
    assert isinstance(noise, Float) and noise.get_sampler().q == 0.25
    assert isinstance(width, Categorical) and width.categories == [8, 16]
    assert space.param_space["seed"] == {"grid_search": [0, 1, 2]}
    assert space.grid_points == 3 and space.num_trials(num_samples=2) == 6
    # samples land inside the declared ranges
    for _ in range(20):
        assert 1e-3 <= lr.sample() <= 0.5
        assert noise.sample() in (0.0, 0.25, 0.5, 0.75, 1.0)


def test_integer_distributions_respect_exclusive_high():
    space = parse_search_space({"train.width": {"randint": [4, 6]}, "seed": {"lograndint": [1, 100]}}, ToyConfig)
    width = space.param_space["train.width"]
    assert isinstance(width, Integer)
    assert {width.sample() for _ in range(200)} == {4, 5}
    assert set(DISTRIBUTIONS) >= {"uniform", "loguniform", "quniform", "randint", "qrandint", "choice", "grid"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"train.lrr": {"uniform": [0.1, 0.2]}}, r"train.lrr: train has no field 'lrr'; known: lr, epochs"),
        ({"optimizer.lr": {"uniform": [0.1, 0.2]}}, r"optimizer.lr: ToyConfig has no field 'optimizer'"),
        ({"seed.value": {"grid": [1]}}, r"seed.value: seed is not a config section"),
        ({"train.lr": {"gaussian": [0.1, 0.2]}}, r"train.lr: unknown distribution 'gaussian'; known: uniform"),
        ({"train.lr": {"uniform": [0.3, 0.2]}}, r"train.lr: low must be < high"),
        ({"train.lr": {"loguniform": [0.0, 0.2]}}, r"train.lr: log-scale distribution needs low > 0"),
        ({"train.lr": {"uniform": [0.1]}}, r"train.lr: expected \[low, high\]"),
        ({"train.noise": {"quniform": [0.0, 1.0, 0.0]}}, r"train.noise: quantum q must be > 0"),
        ({"train.width": {"randint": [1.5, 4]}}, r"train.width: integer distribution needs integer bounds"),
        ({"train.width": {"choice": []}}, r"train.width: expected a non-empty list"),
        ({"train.lr": 0.1}, r"train.lr: expected one distribution"),
        ({"train.lr": {"uniform": [0.1, 0.2], "choice": [1]}}, r"train.lr: expected one distribution"),
        # values the recipe's config rejects fail here, not in a trial
        ({"train.lr": {"uniform": [0.1, 3.0]}}, r"train.lr: value 3.0 is not valid for ToyConfig"),
        ({"train.width": {"choice": [8, "wide"]}}, r"train.width: value 'wide' is not valid"),
    ],
)
def test_errors_name_the_key(spec, message):
    with pytest.raises(SearchSpaceError, match=message):
        parse_search_space(spec, ToyConfig)


def test_searchers():
    space = parse_search_space({"train.lr": {"uniform": [0.1, 0.9]}}, ToyConfig)
    random = build_searcher("random", space, metric="loss", mode="min", max_concurrent=3, seed=0)
    assert isinstance(random, BasicVariantGenerator) and random.max_concurrent == 3
    optuna = build_searcher("optuna", space, metric="loss", mode="min", max_concurrent=2, seed=0)
    assert isinstance(optuna, ConcurrencyLimiter) and optuna.max_concurrent == 2
    assert type(optuna.searcher).__name__ == "OptunaSearch"
    grid = parse_search_space({"seed": {"grid": [0, 1]}}, ToyConfig)
    with pytest.raises(SearchSpaceError, match="searcher 'optuna' cannot expand grids \\(seed\\)"):
        build_searcher("optuna", grid, metric="loss", mode="min", max_concurrent=2, seed=0)
    with pytest.raises(SearchSpaceError, match="unknown searcher 'hyperopt'"):
        build_searcher("hyperopt", space, metric="loss", mode="min", max_concurrent=2, seed=0)


def test_a_quiet_job_hears_nothing_from_optuna_below_warning(monkeypatch):
    import logging

    from mmsearch.orchestration.quiet import VERBOSE_ENV

    space = parse_search_space({"train.lr": {"uniform": [0.1, 0.9]}}, ToyConfig)
    optuna_logger = logging.getLogger("optuna")
    before = optuna_logger.level
    try:
        optuna_logger.setLevel(logging.INFO)  # Optuna's default in a fresh process (an earlier quiet test may have raised it)
        monkeypatch.setenv(VERBOSE_ENV, "1")  # --verbose: Optuna's own INFO lines stay
        build_searcher("optuna", space, metric="loss", mode="min", max_concurrent=2, seed=0)
        assert optuna_logger.getEffectiveLevel() == logging.INFO
        monkeypatch.setenv(VERBOSE_ENV, "0")
        build_searcher("optuna", space, metric="loss", mode="min", max_concurrent=2, seed=0)
        assert optuna_logger.getEffectiveLevel() == logging.WARNING
    finally:
        optuna_logger.setLevel(before)


def test_trial_params_merge_into_nested_config_without_touching_the_base():
    base = {"train": {"lr": 0.1, "epochs": 2}}
    merged = merge_trial_params(base, {"train.lr": 0.5, "seed": 7, "faults.fail_at_epoch": 1})
    assert merged == {"train": {"lr": 0.5, "epochs": 2}, "seed": 7, "faults": {"fail_at_epoch": 1}}
    assert base == {"train": {"lr": 0.1, "epochs": 2}}
    with pytest.raises(SearchSpaceError, match="'seed' is not a section"):
        set_dotted({"seed": 1}, "seed.x", 2)


def test_trainable_validates_the_trial_config_before_running_the_recipe():
    calls = []
    trainable = as_tune_trainable(lambda cfg, context=None: calls.append(cfg), {"train": {"epochs": 2}}, ToyConfig)
    with pytest.raises(ConfigError, match="train.lr"):
        trainable({"train.lr": 7.0})  # fails validation: no Tune session, no recipe call needed
    with pytest.raises(ConfigError, match="unknown key"):
        trainable({"train.momentum": 0.9})
    assert calls == []
