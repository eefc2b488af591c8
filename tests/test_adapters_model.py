"""FuseMix adapters: shapes, reference parameter counts, temperature clamp, weight-decay groups."""
from __future__ import annotations

import pytest
import torch

from mmsearch.adapters import Adapter, AdapterConfig, FuseMixModel, FuseMixModelConfig, param_groups
from mmsearch.config import ConfigError, load_config


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_reference_size_parameter_counts():
    # Reference: 1536-d image latent, 1024-d text latent, 4 blocks x4, out 512.
    model = FuseMixModel(1536, 1024)
    assert _count(model.x_adapter) == 76_330_496
    assert _count(model.y_adapter) == 34_109_952
    assert _count(model) == 76_330_496 + 34_109_952 + 1


def test_adapter_structure_and_output_shape():
    adapter = Adapter(12, 5, AdapterConfig(depth=3, width_factor=2.5, dropout=0.0))
    assert len(adapter.blocks) == 3
    block = adapter.blocks[0]
    assert (block.fc1.in_features, block.fc1.out_features, block.fc2.out_features) == (12, 30, 12)
    assert isinstance(block.act, torch.nn.GELU) and block.act.approximate == "none"
    assert adapter(torch.randn(7, 12)).shape == (7, 5)


def test_block_is_pre_ln_residual():
    adapter = Adapter(8, 4, AdapterConfig(depth=1, width_factor=2, dropout=0.0)).eval()
    block = adapter.blocks[0]
    x = torch.randn(3, 8)
    expected = x + block.fc2(torch.nn.functional.gelu(block.fc1(block.norm(x))))
    torch.testing.assert_close(block(x), expected)


def test_depth_zero_is_norm_and_projection():
    adapter = Adapter(6, 3, AdapterConfig(depth=0))
    assert _count(adapter) == 2 * 6 + 6 * 3 + 3


def test_model_outputs_are_unit_norm_and_modality_agnostic():
    model = FuseMixModel(7, 300, out_dim=16, x_adapter=AdapterConfig(depth=1), y_adapter=AdapterConfig(depth=2)).eval()
    zx, zy = model(torch.randn(5, 7), torch.randn(5, 300))
    assert zx.shape == zy.shape == (5, 16)
    torch.testing.assert_close(zx.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(zy.norm(dim=1), torch.ones(5))


def test_wrong_latent_dimension_is_a_clear_error():
    model = FuseMixModel(7, 9, out_dim=4)
    with pytest.raises(ValueError, match=r"\[batch, 7\]"):
        model.embed_x(torch.randn(2, 9))


def test_temperature_init_and_clamp():
    model = FuseMixModel(4, 4, out_dim=4, temperature_init=0.07, temperature_bounds=(0.01, 0.2))
    assert model.temperature.item() == pytest.approx(0.07)
    with torch.no_grad():
        model.temperature.fill_(5.0)
    model.clamp_temperature_()
    assert model.temperature.item() == pytest.approx(0.2)
    with torch.no_grad():
        model.temperature.fill_(-1.0)
    model.clamp_temperature_()
    assert model.temperature.item() == pytest.approx(0.01)
    with pytest.raises(ValueError, match="temperature"):
        FuseMixModel(4, 4, temperature_init=0.9, temperature_bounds=(0.001, 0.5))


def test_frozen_temperature_is_left_out_of_the_optimiser():
    model = FuseMixModel(4, 4, out_dim=4, learn_temperature=False)
    grouped = [p for g in param_groups(model, 0.1) for p in g["params"]]
    assert all(p is not model.temperature for p in grouped)


def test_weight_decay_only_on_weight_matrices():
    model = FuseMixModel(6, 5, out_dim=3, x_adapter=AdapterConfig(depth=2), y_adapter=AdapterConfig(depth=1))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = sorted(names[id(p)] for p in decay["params"])
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    # Linear weights only: 2 per block (fc1, fc2) + the projection, per side.
    assert decayed == sorted([
        "x_adapter.blocks.0.fc1.weight", "x_adapter.blocks.0.fc2.weight",
        "x_adapter.blocks.1.fc1.weight", "x_adapter.blocks.1.fc2.weight", "x_adapter.proj.weight",
        "y_adapter.blocks.0.fc1.weight", "y_adapter.blocks.0.fc2.weight", "y_adapter.proj.weight",
    ])
    assert "temperature" in not_decayed
    assert all(n.endswith(("bias", "norm.weight")) or n == "temperature" for n in not_decayed)
    assert len(decayed) + len(not_decayed) == len(list(model.parameters()))


def test_model_config_validation():
    cfg = load_config(FuseMixModelConfig, {"x": {"depth": 2}, "out_dim": 64, "y_dim": 384})
    assert cfg.x.depth == 2 and cfg.y.depth == 4 and cfg.y_dim == 384
    with pytest.raises(ConfigError, match="dropout"):
        load_config(FuseMixModelConfig, {"x": {"dropout": 1.0}})
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(FuseMixModelConfig, {"x": {"layers": 2}})
