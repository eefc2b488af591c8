"""The fusion search space: every strategy steps on it, derive writes a fusion spec that StreamNet
builds and that computes what the supernet's path computes; mmnas stays the default."""
from __future__ import annotations

import pytest
import torch

from mmsearch.nas import (
    STRATEGIES,
    FusionSpec,
    FusionSupernet,
    StreamNet,
    Supernet,
    SupernetConfig,
    arch_step,
    build_supernet,
    load_spec,
    load_stream_net_from_supernet,
    make_arch_optimizer,
    make_weight_optimizer,
    network_weights,
    save_spec,
    weight_step,
)
from mmsearch.nas.stream_spec import DEFAULT_FUSION_POOL
from tests.test_nas_tiny import make_batch, tiny_net


def _config(strategy="proxyless", **changes):
    base = dict(net=tiny_net(hidden=32, head_dim=16), enc_depth=2, dec_depth=3, strategy=strategy, search_space="fusion")
    return SupernetConfig(**{**base, **changes})


def _objective(outputs, batch):
    pred = outputs["pred"]
    loss = ((pred - batch.targets["y"]) ** 2).mean()
    return loss, {"mse": float(loss.detach())}


class MeanHead(torch.nn.Module):
    """Reads both streams (masked means), so every candidate's outputs reach the loss."""

    def __init__(self, hidden=32):
        super().__init__()
        self.out = torch.nn.Linear(2 * hidden, 1)

    def forward(self, text, text_mask, regions, region_mask):
        def mean(x, m):
            real = (~m).float()[..., None]
            return (x * real).sum(1) / real.sum(1).clamp(min=1)

        return {"pred": self.out(torch.cat([mean(text, text_mask), mean(regions, region_mask)], -1)).squeeze(-1)}


def test_mmnas_stays_the_default():
    cfg = SupernetConfig(net=tiny_net())
    assert cfg.search_space == "mmnas" and isinstance(build_supernet(cfg), Supernet)
    with pytest.raises(ValueError, match="build_supernet"):
        Supernet(_config())
    with pytest.raises(ValueError, match=r"fusion_pool entry 0 must be 'stream:op'"):
        _config(fusion_pool=("self_att",))
    with pytest.raises(ValueError, match=r"cannot run on the joint stream; allowed: self_att, feed_forward, joint_rel_self_att"):
        _config(fusion_pool=("joint:guided_att",))


def test_mcan_prior_is_mmnas_encoder_decoder_in_fusion_space():
    net = FusionSupernet(_config())
    spec = net.derive()
    assert spec.enc == ("text:self_att", "text:feed_forward")
    assert spec.dec == ("image:rel_self_att", "image:guided_att", "image:feed_forward")
    assert [b.label for b in spec.blocks] == list(spec.enc + spec.dec)
    with pytest.raises(ValueError, match="alpha_init='mcan_prior' puts 'text:self_att'"):
        FusionSupernet(_config(fusion_pool=("text:feed_forward", "image:rel_self_att", "image:guided_att", "image:feed_forward")))


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_every_strategy_steps_on_the_fusion_space(strategy):
    torch.manual_seed(0)
    net = FusionSupernet(_config(strategy, alpha_init="uniform", spos_momentum=0.5, enc_depth=1, dec_depth=2))
    head = MeanHead()
    w_opt, a_opt = make_weight_optimizer(net, head, lr=1e-3), make_arch_optimizer(net)
    assert {id(p) for p in network_weights(net, head)}.isdisjoint({id(a) for a in net.arch_parameters()})
    batch = make_batch(batch=4, seed=1)
    before = [a.detach().clone() for a in net.arch_parameters()]
    for step in range(4):
        weight_step(net, head, _objective, batch, w_opt)
        arch_step(net, head, _objective, make_batch(batch=4, seed=2 + step), a_opt)
    moved = [not torch.equal(b, a.detach()) for b, a in zip(before, net.arch_parameters())]
    assert all(moved), f"{strategy} did not update both stages' architecture weights"
    spec = net.derive(epoch=4)
    assert isinstance(spec, FusionSpec) and spec.op_pools["enc"] == DEFAULT_FUSION_POOL


def test_derived_spec_round_trips_and_computes_the_supernet_path(tmp_path):
    """A path with joint, co-attention, early summation and cross blocks: derive -> file -> StreamNet
    with the supernet's weights == the supernet on that path."""
    torch.manual_seed(0)
    net = FusionSupernet(_config()).eval()
    pool = list(DEFAULT_FUSION_POOL)
    chosen = ["both:early_sum", "joint:joint_rel_self_att", "joint:feed_forward", "both:co_att", "text:t2r_att"]
    with torch.no_grad():
        for alpha, names in ((net.enc_alpha, chosen[:2]), (net.dec_alpha, chosen[2:])):
            alpha.fill_(0.0)
            for block, name in enumerate(names):
                alpha[block, pool.index(name)] = 5.0
    spec = net.derive(epoch=3, task="vqa")
    assert [b.label for b in spec.blocks] == [
        "both:early_sum", "concat", "joint:joint_rel_self_att", "joint:feed_forward", "split", "both:co_att", "text:t2r_att"]
    again = load_spec(save_spec(spec, tmp_path / "best_arch.json"))
    assert isinstance(again, FusionSpec) and again.same_architecture(spec) and again.stages == spec.stages
    assert again.probs["enc"][0][pool.index("both:early_sum")] > 0.9
    fixed = StreamNet(again, net.config).eval()
    load_stream_net_from_supernet(fixed, net)
    head = MeanHead().eval()
    batch = make_batch(batch=3, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(fixed(batch, head)["pred"], net(batch, head, net.fixed_plan(again))["pred"])


@pytest.mark.parametrize("task", ["vqa", "itm", "vg"])
def test_fusion_search_configs_validate(task, tmp_path):
    """configs/search/fusion/<task>.yaml: valid, the fusion space, and the tune section plans."""
    from pathlib import Path

    from mmsearch.config import load_config, read_yaml
    from mmsearch.orchestration.experiment import plan_experiment
    from mmsearch.orchestration.settings import TuneSettings
    from mmsearch.recipes.search.recipe import run_search
    from mmsearch.recipes.search.config import SearchConfig

    raw = read_yaml(Path(__file__).resolve().parents[1] / "configs" / "search" / "fusion" / f"{task}.yaml")
    cfg = load_config(SearchConfig, raw["recipe"])
    assert cfg.model.search_space == "fusion" and cfg.model.fusion_pool == DEFAULT_FUSION_POOL and cfg.data.task == task
    settings = load_config(TuneSettings, {**raw["tune"], "storage_path": str(tmp_path)})
    assert plan_experiment(run_search, SearchConfig, raw["recipe"], settings, epochs_key="search.epochs") is not None


@pytest.mark.slow
def test_search_recipe_on_the_fusion_space_writes_fusion_specs(tmp_path):
    """The real recipe (synthetic VQA data): search_space=fusion searches, and best/final arch files
    are fusion specs that StreamNet builds."""
    from mmsearch.config import load_config
    from mmsearch.data.synthetic import SyntheticTaskData
    from mmsearch.nas import build_derived
    from mmsearch.recipes.search.recipe import run_search
    from mmsearch.recipes.search.config import SearchConfig

    cfg = load_config(SearchConfig, {
        "data": {"task": "vqa"},
        "model": {"hidden": 32, "head_dim": 16, "enc_depth": 1, "dec_depth": 2, "dropout": 0.0, "word_dim": 16,
                  "search_space": "fusion", "alpha_init": "uniform"},
        "head": {"task": "vqa", "flat_mlp_size": 32},
        "search": {"strategy": "darts", "epochs": 2, "warmup_epochs": 1, "arch_every": 2, "batch_size": 8,
                   "arch_batch_size": 8, "num_threads": 1, "max_steps_per_epoch": 4},
        "eval": {"batch_size": 16, "max_samples": 16},
        "output_dir": str(tmp_path / "run"),
    })
    data = SyntheticTaskData("vqa", train_images=20, val_images=5, test_images=2)
    result = run_search(cfg, task_data=data)
    for name in ("final_arch.json", "best_arch.json"):
        spec = load_spec(tmp_path / "run" / name)
        assert isinstance(spec, FusionSpec) and spec.pattern == "searched" and len(spec.enc + spec.dec) == 3
        assert spec.config["model"]["search_space"] == "fusion"
    assert isinstance(result.final_spec, FusionSpec)
    build_derived(result.final_spec, FusionSupernet(_config(enc_depth=1, dec_depth=2)).config)
