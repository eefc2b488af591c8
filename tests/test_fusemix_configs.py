"""The shipped FuseMix configs load, and the reference config is the reference recipe."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmsearch.adapters import FuseMixModel
from mmsearch.config import load_config
from mmsearch.recipes.fusemix.config import FuseMixConfig

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "fusemix"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_configs_are_shipped():
    assert {p.name for p in CONFIGS} >= {"reference.yaml", "scenes.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_loads_and_names_distinct_splits(path):
    cfg = load_config(FuseMixConfig, path)
    assert cfg.data.val_store and cfg.data.val_store != cfg.data.test_store
    assert cfg.model.x_dim and cfg.model.y_dim


def test_reference_config_matches_the_reference_recipe():
    cfg = load_config(FuseMixConfig, CONFIG_DIR / "reference.yaml")
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.train.seed, cfg.train.amp) == (40960, 500, 42, False)
    assert (cfg.loss.mixup_mode, cfg.loss.mixup_alpha, cfg.loss.temperature_init) == ("halves", 1.0, 0.07)
    assert (cfg.optim.lr, cfg.optim.min_lr, cfg.optim.warmup_steps, cfg.optim.weight_decay) == (1e-3, 1e-6, 100, 0.1)
    model = FuseMixModel.from_config(cfg.model, cfg.model.x_dim, cfg.model.y_dim)
    assert sum(p.numel() for p in model.parameters()) == 110_440_449


def test_overrides_apply_to_shipped_configs():
    cfg = load_config(FuseMixConfig, CONFIG_DIR / "scenes.yaml", ["loss.mixup_alpha=0", "train.epochs=3"])
    assert cfg.loss.mixup_alpha == 0.0 and cfg.train.epochs == 3
