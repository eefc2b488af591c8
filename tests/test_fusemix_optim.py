"""FuseMix optimiser and schedule: warm-up then per-epoch cosine, decay on matrices only."""
from __future__ import annotations

import math

import pytest
import torch

from mmsearch.adapters import FuseMixModel
from mmsearch.config import load_config
from mmsearch.recipes.fusemix.config import FuseMixOptimConfig
from mmsearch.recipes.fusemix.optim import build_optimizer, learning_rate


def test_warmup_then_hold_within_epoch_zero():
    cfg = load_config(FuseMixOptimConfig, {"lr": 1e-3, "warmup_lr": 1e-6, "warmup_steps": 100})
    assert learning_rate(cfg, 500, 0, 0) == pytest.approx(1e-6)
    assert learning_rate(cfg, 500, 0, 50) == pytest.approx(1e-6 + (1e-3 - 1e-6) * 0.5)
    assert learning_rate(cfg, 500, 0, 100) == pytest.approx(1e-3)
    assert learning_rate(cfg, 500, 0, 130) == pytest.approx(1e-3)  # held until the epoch ends


def test_per_epoch_cosine_to_min_lr():
    cfg = load_config(FuseMixOptimConfig, {"lr": 1e-3, "min_lr": 1e-6})
    assert learning_rate(cfg, 500, 1, 9999) == pytest.approx(1e-6 + (1e-3 - 1e-6) * 0.5 * (1 + math.cos(math.pi / 500)))
    assert learning_rate(cfg, 500, 250, 0) == pytest.approx(1e-6 + (1e-3 - 1e-6) * 0.5)
    assert learning_rate(cfg, 500, 500, 0) == pytest.approx(1e-6)
    rates = [learning_rate(cfg, 10, e, 0) for e in range(1, 10)]
    assert rates == sorted(rates, reverse=True)


def test_no_warmup():
    cfg = load_config(FuseMixOptimConfig, {"warmup_steps": 0})
    assert learning_rate(cfg, 5, 0, 0) == cfg.lr


@pytest.mark.parametrize("impl,flag", [("foreach", "foreach"), ("for-loop", "foreach"), ("auto", "fused"), ("fused", "fused")])
def test_optimizer_groups_and_implementation(impl, flag):
    model = FuseMixModel(6, 5, out_dim=3)
    cfg = load_config(FuseMixOptimConfig, {"implementation": impl, "betas": [0.8, 0.95]})
    opt = build_optimizer(model, cfg, torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    assert decay["betas"] == (0.8, 0.95)
    assert decay[flag] is (impl != "for-loop")


def test_invalid_optim_config():
    from mmsearch.config import ConfigError

    with pytest.raises(ConfigError, match="warmup_steps"):
        load_config(FuseMixOptimConfig, {"warmup_steps": -1})
    with pytest.raises(ConfigError, match="implementation"):
        load_config(FuseMixOptimConfig, {"implementation": "apex"})


def test_fused_and_foreach_adamw_take_the_same_step():
    torch.manual_seed(0)
    models = [FuseMixModel(6, 5, out_dim=3) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    x, y = torch.randn(4, 6), torch.randn(4, 5)
    for model, impl in zip(models, ("fused", "foreach")):
        opt = build_optimizer(model.eval(), load_config(FuseMixOptimConfig, {"implementation": impl}), torch.device("cpu"))
        for _ in range(3):
            zx, zy = model(x, y)
            opt.zero_grad()
            (zx @ zy.T).sum().backward()
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
