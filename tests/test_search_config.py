"""The search config: validation that names the key, resolution from the task data, the weight
learning-rate schedule and the shipped configs (agreement with the nas configs: test_model_config.py)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from mmsearch.config import ConfigError, load_config, read_yaml
from mmsearch.nas import STRATEGIES, SupernetConfig
from mmsearch.recipes.search.config import SearchConfig, resolve_config, supernet_config, weight_lr
from mmsearch.data.task_data import TaskInfo

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "search"
SHIPPED = sorted(CONFIG_DIR.glob("*.yaml"))
INFO = TaskInfo(task="vqa", region_dim=40, vocab_size=50, text_state_dim=24, num_answers=13, answers=tuple("abcdefghijklm"))


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"search": {"strategy": "enas"}}, "search.strategy"),
        ({"search": {"warmup_epochs": 5, "epochs": 5}}, "search.warmup_epochs"),
        ({"model": {"dec_pool": ["self_att", "conv3x3"]}}, "dec_pool"),
        ({"model": {"enc_pool": ["self_att", "guided_att"]}}, "enc_pool"),
        ({"model": {"dec_pool": ["self_att", "feed_forward"]}}, "alpha_init"),  # MCAN prior needs RSA and GA
        ({"model": {"hidden": 100}}, "hidden (100) must be a multiple of head_dim"),
        ({"head": {"task": "itm"}}, "head.task"),
        ({"search": {"arch_lr": 0}}, "search.arch_lr"),
        ({"search": {"arch_every": 0}}, "search.arch_every"),
        ({"search": {"wieght_lr": 1e-3}}, "search.wieght_lr"),
        ({"model": {"text_input": "states"}}, "model.text_input"),
    ],
)
def test_invalid_configs_fail_naming_the_key(override, named):
    with pytest.raises(ConfigError) as err:
        load_config(SearchConfig, override)
    assert named in str(err.value)


def test_defaults_are_mmnas_search_settings():
    cfg = load_config(SearchConfig, {})
    s = cfg.search
    assert (s.strategy, s.epochs, s.warmup_epochs, s.arch_every, s.batch_size) == ("proxyless", 100, 20, 5, 64)
    assert (s.weight_lr, s.weight_betas, s.weight_eps, s.grad_clip) == (4e-4, (0.9, 0.98), 1e-9, 1.0)
    assert (s.arch_lr, s.arch_betas) == (0.1, (0.0, 0.999))
    assert (cfg.model.hidden, cfg.model.enc_depth, cfg.model.dec_depth, cfg.model.alpha_init) == (256, 12, 18, "mcan_prior")
    assert cfg.primary_metric == "vqa_acc" and cfg.run_dir == "runs/search_vqa_proxyless_seed0"


def test_resolve_fills_data_sizes_and_checks_stated_ones():
    cfg = resolve_config(load_config(SearchConfig, {"model": {"hidden": 64}}), INFO)
    assert (cfg.model.vocab_size, cfg.model.region_dim, cfg.model.word_dim, cfg.model.text_input) == (50, 40, 300, "tokens")
    assert cfg.head.num_answers == 13 and cfg.output_dir == "runs/search_vqa_proxyless_seed0"
    net = supernet_config(cfg)
    assert isinstance(net, SupernetConfig) and (net.net.vocab_size, net.net.hidden, net.strategy, net.seed) == (50, 64, "proxyless", 0)
    assert resolve_config(cfg, INFO) == cfg  # idempotent: a resolved config resolves to itself

    states = resolve_config(load_config(SearchConfig, {"data": {"text_input": "states"}}), INFO)
    assert (states.model.text_state_dim, states.model.vocab_size) == (24, None)
    pretrained = dataclasses.replace(INFO, embedding_init=np.zeros((50, 16), np.float32))
    assert resolve_config(load_config(SearchConfig, {}), pretrained).model.word_dim == 16

    with pytest.raises(ValueError, match="model.region_dim is 2048 but the data has 40"):
        resolve_config(load_config(SearchConfig, {"model": {"region_dim": 2048}}), INFO)
    with pytest.raises(ValueError, match="head.num_answers is 7"):
        resolve_config(load_config(SearchConfig, {"head": {"task": "vqa", "num_answers": 7}}), INFO)
    with pytest.raises(ValueError, match="data.task is 'itm'"):
        resolve_config(load_config(SearchConfig, {"data": {"task": "itm"}}), INFO)
    with pytest.raises(ValueError, match="not resolved"):
        supernet_config(load_config(SearchConfig, {}))


def test_weight_lr_schedule():
    s = load_config(SearchConfig, {"search": {"weight_lr": 1.0, "weight_lr_decay_epochs": [10, 12], "epochs": 30}}).search
    assert [weight_lr(s, e) for e in (1, 2, 3, 4, 9)] == [0.25, 0.5, 0.75, 1.0, 1.0]  # MMnas warm-up, then constant
    assert weight_lr(s, 10) == pytest.approx(0.2) and weight_lr(s, 13) == pytest.approx(0.04)
    flat = load_config(SearchConfig, {"search": {"weight_lr": 2.0, "weight_lr_warmup": []}}).search
    assert weight_lr(flat, 1) == 2.0
    with pytest.raises(ValueError, match="1-based"):
        weight_lr(s, 0)


def test_configs_are_shipped():
    assert {p.stem for p in SHIPPED} >= {"vqa", "itm", "vg"}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_config_loads_and_its_tune_section_plans(path, tmp_path):
    from mmsearch.orchestration.experiment import plan_experiment
    from mmsearch.orchestration.settings import TuneSettings
    from mmsearch.recipes.search.recipe import run_search

    raw = read_yaml(path)
    cfg = load_config(SearchConfig, raw["recipe"])
    assert cfg.data.task == path.stem and cfg.head is not None and cfg.head.task == path.stem
    assert cfg.search.strategy in STRATEGIES and cfg.search.warmup_epochs < cfg.search.epochs
    assert cfg.model.hidden <= 128 and cfg.search.epochs <= 20  # small enough for a CPU
    settings = load_config(TuneSettings, {**raw["tune"], "storage_path": str(tmp_path)})
    plan = plan_experiment(run_search, SearchConfig, raw["recipe"], settings, epochs_key="search.epochs")
    assert plan.max_t == cfg.search.epochs and plan.num_trials >= 2
