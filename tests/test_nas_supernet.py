"""Supernet and derived net: fixed path == derived net, padding invariance, parameter groups, input errors."""
from __future__ import annotations

import pytest
import torch

from mmsearch.nas import (
    DerivedNet,
    NetConfig,
    Supernet,
    make_weight_optimizer,
    named_spec,
    random_spec,
    train_step,
)
from mmsearch.nas.mixed_op import PathPlan
from test_nas_tiny import TinyHead, make_batch, objective, tiny_net, tiny_supernet_config


def _pair(spec, net: NetConfig, seed: int = 0, **supernet_changes):
    torch.manual_seed(seed)
    config = tiny_supernet_config(enc_depth=len(spec.enc), dec_depth=len(spec.dec), net=net, **supernet_changes)
    supernet = Supernet(config).eval()
    derived = DerivedNet(spec, config).eval()
    derived.load_from_supernet(supernet)
    return supernet, derived


@pytest.mark.parametrize(
    "spec_name,net_changes",
    [
        ("mmnas_vqa", {}),
        ("mmnas_vg", {"norm": "pre", "box_feature": True}),
        ("mcan", {"text_input": "states", "text_state_dim": 12, "vocab_size": None, "attn_bias": True}),
    ],
)
def test_supernet_on_a_fixed_path_equals_the_derived_net(spec_name, net_changes):
    spec = named_spec(spec_name)
    supernet, derived = _pair(spec, tiny_net(**net_changes))
    head = TinyHead().eval()
    batch = make_batch(states_dim=12 if net_changes.get("text_input") == "states" else None)
    with torch.no_grad():
        expected = derived(batch, head)
        got = supernet(batch, head, supernet.fixed_plan(spec))
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)
    # Derived parameters are exactly the path's parameters (no unused candidates).
    path_params = sum(p.numel() for p in derived.parameters())
    assert path_params < sum(p.numel() for p in supernet.weight_parameters())


def test_default_forward_runs_the_argmax_architecture():
    spec = random_spec(3, 4, seed=2)
    supernet, derived = _pair(spec, tiny_net(), alpha_init="uniform")
    with torch.no_grad():
        for chain, alpha in (("enc", supernet.enc_alpha), ("dec", supernet.dec_alpha)):
            ops = spec.enc if chain == "enc" else spec.dec
            for block, name in enumerate(ops):
                alpha[block, supernet.pools[chain].index(name)] = 5.0
    assert supernet.derive().same_architecture(spec)
    head = TinyHead().eval()
    batch = make_batch(seed=1)
    with torch.no_grad():
        torch.testing.assert_close(supernet(batch, head)["score"], derived(batch, head)["score"], rtol=0, atol=0)


def test_extra_padding_changes_nothing_and_heads_see_full_shapes():
    spec = named_spec("mmnas_itm")
    _, net = _pair(spec, tiny_net())
    seen = {}

    class Recorder(TinyHead):
        def forward(self, text, text_mask, regions, region_mask):
            seen["shapes"] = (tuple(text.shape), tuple(text_mask.shape), tuple(regions.shape), tuple(region_mask.shape))
            seen["tail_zero"] = bool((text[:, 6:] == 0).all()) and bool((regions[:, 7:] == 0).all())
            return super().forward(text, text_mask, regions, region_mask)

    head = Recorder().eval()
    short = make_batch(tokens=6, regions=7, text_lengths=[6, 3, 2], region_counts=[7, 4, 1])
    long = make_batch(tokens=6, regions=7, text_lengths=[6, 3, 2], region_counts=[7, 4, 1])
    # Same real content, padded to 10 tokens and 12 regions with garbage in the padding.
    long.text_ids = torch.cat([short.text_ids, torch.zeros(3, 4, dtype=torch.int64)], 1)
    long.text_mask = torch.cat([short.text_mask, torch.ones(3, 4, dtype=torch.bool)], 1)
    long.region_feats = torch.cat([short.region_feats, torch.randn(3, 5, short.region_feats.shape[2])], 1)
    long.region_boxes = torch.cat([short.region_boxes, torch.rand(3, 5, 4) * 50], 1)
    long.region_mask = torch.cat([short.region_mask, torch.ones(3, 5, dtype=torch.bool)], 1)
    with torch.no_grad():
        a = net(short, head)
        b = net(long, head)
    assert seen["shapes"] == ((3, 10, 64), (3, 10), (3, 12, 64), (3, 12))
    assert seen["tail_zero"]  # trimmed padding comes back as zeros
    torch.testing.assert_close(a["score"], b["score"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a["per_region"], b["per_region"][:, :7], atol=1e-5, rtol=1e-5)


def test_fully_padded_sample_gives_finite_outputs_and_gradients():
    spec = named_spec("mmnas_vqa")
    _, net = _pair(spec, tiny_net())
    net.train()
    head = TinyHead()
    batch = make_batch()
    batch.text_mask[1] = True  # a sample with no real text (GA attends to padding only)
    batch.region_mask[2] = True  # and one with no real regions
    out = net(batch, head)
    assert all(torch.isfinite(v).all() for v in out.values())
    out["score"].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_parameter_groups_are_disjoint_and_complete():
    supernet = Supernet(tiny_supernet_config())
    weights = {id(p) for p in supernet.weight_parameters()}
    alphas = {id(p) for p in supernet.arch_parameters()}
    assert not weights & alphas
    assert weights | alphas == {id(p) for p in supernet.parameters()}
    assert [tuple(a.shape) for a in supernet.arch_parameters()] == [(2, 2), (3, 4)]


def test_derived_net_trains_and_skips_relation_when_unused():
    spec = named_spec("mcan")  # no RSA: no geometry, no relation embedding
    net = DerivedNet(spec, tiny_net())
    assert net.front.relation_embed is None
    head = TinyHead()
    opt = make_weight_optimizer(net, head, lr=1e-3)
    batch = make_batch()
    batch.region_boxes = None  # not needed without RSA or the box feature
    losses = [train_step(net, head, objective, batch, opt)["loss"] for _ in range(15)]
    assert losses[-1] < losses[0]


def test_bad_inputs_fail_with_clear_messages():
    net = DerivedNet(named_spec("mmnas_vqa"), tiny_net())
    head = TinyHead()
    batch = make_batch()
    batch.region_feats = torch.randn(3, 7, 25)
    with pytest.raises(ValueError, match=r"region_feats must be \[B, L, 24\]"):
        net(batch, head)
    batch = make_batch()
    batch.region_feats[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="region_feats contains NaN"):
        net(batch, head)
    batch = make_batch()
    batch.text_ids = None
    with pytest.raises(ValueError, match="needs batch.text_ids"):
        net(batch, head)
    batch = make_batch()
    batch.region_boxes = None
    with pytest.raises(ValueError, match="needs the batch's region_boxes"):
        net(batch, head)
    batch = make_batch()
    batch.region_mask = batch.region_mask[:, :3]
    with pytest.raises(ValueError, match=r"region_mask must be bool \[3, 7\]"):
        net(batch, head)
    supernet = Supernet(tiny_supernet_config(enc_depth=12, dec_depth=18))
    with pytest.raises(ValueError, match="depths"):
        supernet.fixed_plan(random_spec(2, 3))
    small = Supernet(tiny_supernet_config(enc_depth=12, dec_depth=18, dec_pool=("self_att", "guided_att", "feed_forward"), alpha_init="uniform"))
    with pytest.raises(ValueError, match=r"uses \['rel_self_att'\]"):
        small.fixed_plan(named_spec("mmnas_vqa"))


def test_weight_step_rejects_non_finite_loss():
    from mmsearch.nas import weight_step

    supernet = Supernet(tiny_supernet_config())
    head = TinyHead()
    opt = make_weight_optimizer(supernet, head)

    def nan_objective(outputs, batch):
        return outputs["score"].sum() * float("nan"), {}

    with pytest.raises(FloatingPointError, match="weight-step loss is nan"):
        weight_step(supernet, head, nan_objective, make_batch(), opt)


def test_single_plan_runs_only_chosen_ops():
    supernet = Supernet(tiny_supernet_config(alpha_init="uniform")).train()
    head = TinyHead()
    plan = PathPlan.single([0, 1], [2, 2, 3])  # enc SA, FFN; dec GA, GA, FFN: no RSA, no geometry
    batch = make_batch()
    batch.region_boxes = None  # proves the relation embedding is not computed
    out = supernet(batch, head, plan)
    out["score"].sum().backward()
    ran = {(c, b, n) for c, chain in (("enc", supernet.encoder), ("dec", supernet.decoder)) for b, blk in enumerate(chain) for n, op in blk.ops.items() if any(p.grad is not None for p in op.parameters())}
    assert ran == {("enc", 0, "self_att"), ("enc", 1, "feed_forward"), ("dec", 0, "guided_att"), ("dec", 1, "guided_att"), ("dec", 2, "feed_forward")}


def test_supernet_config_round_trips_through_yaml_dicts_and_rejects_bad_pools(tmp_path):
    from mmsearch.config import ConfigError, dump_config, load_config

    config = tiny_supernet_config("darts", enc_pool=("feed_forward", "self_att_64"), alpha_init="uniform")
    path = dump_config(config, tmp_path / "config.yaml")
    assert load_config(type(config), path) == config
    assert config.pools["enc"] == ("feed_forward", "self_att")
    with pytest.raises(ConfigError, match="encoder blocks cannot use"):
        load_config(type(config), {"net": {"vocab_size": 5}, "enc_pool": ["self_att", "guided_att"]})
    with pytest.raises(ConfigError, match="multiple of head_dim"):
        load_config(type(config), {"net": {"vocab_size": 5, "hidden": 100}})
    with pytest.raises(ConfigError, match="needs a positive vocab_size"):
        load_config(type(config), {"net": {}})
