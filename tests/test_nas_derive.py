"""Derivation is a pure function of the alpha state; entropy shows convergence and collapse."""
from __future__ import annotations

import math

import pytest
import torch

from mmsearch.nas import DEFAULT_POOLS, Supernet, arch_entropy, block_probabilities, derive
from test_nas_tiny import tiny_supernet_config


def _state(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {"enc": torch.randn(4, 2, generator=g), "dec": torch.randn(5, 4, generator=g)}


def test_derive_is_pure_and_deterministic():
    state = _state()
    copy = {k: v.clone() for k, v in state.items()}
    a = derive(state, DEFAULT_POOLS, epoch=3, seed=7)
    b = derive(copy, DEFAULT_POOLS, epoch=3, seed=7)
    assert a == b
    assert all(torch.equal(state[k], copy[k]) for k in state)  # input untouched
    for chain, ops in (("enc", a.enc), ("dec", a.dec)):
        assert list(ops) == [DEFAULT_POOLS[chain][i] for i in state[chain].argmax(-1)]
    assert a.epoch == 3 and a.seed == 7 and a.op_pools == DEFAULT_POOLS
    for chain in ("enc", "dec"):
        probs = torch.tensor(a.probs[chain], dtype=torch.float64)
        torch.testing.assert_close(probs, torch.softmax(state[chain].double(), -1))
        torch.testing.assert_close(probs.sum(-1), torch.ones(len(probs), dtype=torch.float64))


def test_ties_go_to_the_first_pool_op():
    state = {"enc": torch.zeros(2, 2), "dec": torch.zeros(3, 4)}
    spec = derive(state, DEFAULT_POOLS)
    assert spec.enc == ("self_att",) * 2 and spec.dec == ("self_att",) * 3


def test_entropy_uniform_and_collapsed():
    uniform = {"enc": torch.zeros(3, 2), "dec": torch.zeros(4, 4)}
    ent = arch_entropy(uniform)
    assert ent["enc"] == pytest.approx([math.log(2)] * 3)
    assert ent["dec"] == pytest.approx([math.log(4)] * 4)
    assert ent["normalized_mean"] == pytest.approx(1.0)
    collapsed = {"enc": torch.tensor([[50.0, 0.0]] * 3), "dec": torch.tensor([[0.0, 0.0, 50.0, 0.0]] * 4)}
    ent = arch_entropy(collapsed)
    assert ent["normalized_mean"] < 1e-15
    assert ent["dec_mean"] == pytest.approx(0.0, abs=1e-15)
    mixed = arch_entropy({"enc": torch.tensor([[0.0, 0.0]]), "dec": torch.tensor([[50.0, 0.0, 0.0, 0.0]])})
    assert mixed["normalized_mean"] == pytest.approx(0.5, abs=1e-12)


def test_bad_alpha_state_fails_clearly():
    with pytest.raises(ValueError, match="needs keys"):
        block_probabilities({"enc": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="NaN"):
        derive({"enc": torch.full((2, 2), float("nan")), "dec": torch.zeros(2, 4)}, DEFAULT_POOLS)
    with pytest.raises(ValueError, match="the dec pool has 4"):
        derive({"enc": torch.zeros(2, 2), "dec": torch.zeros(2, 3)}, DEFAULT_POOLS)


def test_supernet_derive_carries_config_seed_and_probs():
    supernet = Supernet(tiny_supernet_config(seed=11))
    spec = supernet.derive(epoch=0, task="vqa")
    assert spec.seed == 11 and spec.task == "vqa" and spec.epoch == 0
    assert spec.config["strategy"] == "proxyless" and spec.config["net"]["hidden"] == 64
    # MCAN-like prior at init: encoder SA, FFN; decoder RSA, GA, FFN.
    assert spec.enc == ("self_att", "feed_forward") and spec.dec == ("rel_self_att", "guided_att", "feed_forward")
    assert spec == derive(supernet.alpha_state(), supernet.pools, seed=11, config=spec.config, epoch=0, task="vqa")
