"""The architecture-weight bookkeeping both supernets share (mmsearch.nas.arch_weights): the
state-dict layout every search checkpoint has, the parameter groups, and the two alpha inits."""
from __future__ import annotations

import pytest
import torch

from mmsearch.nas import FusionSupernet, Supernet, SupernetConfig, build_supernet
from tests.test_nas_tiny import tiny_net


def _config(space: str, **changes) -> SupernetConfig:
    return SupernetConfig(net=tiny_net(hidden=32, head_dim=16), enc_depth=2, dec_depth=3, search_space=space, **changes)


@pytest.mark.parametrize("space, cls", [("mmnas", Supernet), ("fusion", FusionSupernet)])
def test_alphas_and_strategy_frame_the_state_dict_and_parameters(space, cls):
    """Checkpoints keep their keys: the module's own enc_alpha, dec_alpha first, the strategy's RNG last."""
    net = build_supernet(_config(space, strategy="spos"))
    assert isinstance(net, cls)
    keys = list(net.state_dict())
    assert keys[:2] == ["enc_alpha", "dec_alpha"] and keys[-1] == "strategy._extra_state"
    assert [n for n, _ in net.named_parameters()][:2] == ["enc_alpha", "dec_alpha"]
    params = list(net.parameters())
    assert net.weight_parameters() == params[2:] and net.arch_parameters() == params[:2]
    state = net.alpha_state()
    assert torch.equal(state["enc"], net.enc_alpha.detach()) and state["enc"].data_ptr() != net.enc_alpha.data_ptr()
    spec = net.derive(epoch=1)
    assert spec.seed == 0 and spec.config["search_space"] == space and spec.epoch == 1


def test_the_prior_is_mcan_in_both_spaces():
    """mcan_prior: +s on MMnas's encoder-decoder op of every block, -s elsewhere, in either pool's names."""
    mmnas = build_supernet(_config("mmnas", prior_strength=2.0))
    fusion = build_supernet(_config("fusion", prior_strength=2.0))
    for net, prefix in ((mmnas, ("", "")), (fusion, ("text:", "image:"))):
        for alpha, chain, ops, p in ((net.enc_alpha, "enc", ("self_att", "feed_forward"), prefix[0]),
                                     (net.dec_alpha, "dec", ("rel_self_att", "guided_att", "feed_forward"), prefix[1])):
            expected = torch.full_like(alpha, -2.0)
            for block, op in enumerate(ops):
                expected[block, net.pools[chain].index(p + op)] = 2.0
            assert torch.equal(alpha.detach(), expected)
    assert all(bool((a == 0).all()) for a in build_supernet(_config("fusion", alpha_init="uniform")).arch_parameters())
