"""Few-shot supernets (mmsearch.evaluation.fewshot): each sub-supernet trains only paths that keep
its choice at the split block, starts from the searched supernet, and scores the architectures
that share its choice; the estimate is deterministic per seed; bad split blocks fail clearly."""
from __future__ import annotations

import copy

import pytest
import torch

from mmsearch.config import load_config
from mmsearch.data.synthetic import SyntheticTaskData
from mmsearch.evaluation.fewshot import fewshot_estimates, fine_tune, parse_block, uniform_plan
from mmsearch.evaluation.oneshot import load_supernet, score_paths
from mmsearch.nas import ArchSpec
from mmsearch.recipes.context import LocalContext
from mmsearch.recipes.search.config import SearchConfig
from mmsearch.recipes.search.recipe import run_search

SPECS = {
    "a": {"enc": ["self_att", "feed_forward"], "dec": ["guided_att", "self_att", "feed_forward"]},
    "b": {"enc": ["feed_forward", "self_att"], "dec": ["guided_att", "rel_self_att", "guided_att"]},
    "c": {"enc": ["self_att", "self_att"], "dec": ["feed_forward", "guided_att", "self_att"]},
}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    data = SyntheticTaskData("vqa", train_images=40, val_images=10, test_images=4)
    cfg = load_config(SearchConfig, {
        "data": {"task": "vqa"},
        "model": {"hidden": 32, "head_dim": 16, "enc_depth": 2, "dec_depth": 3, "dropout": 0.0, "word_dim": 16},
        "head": {"task": "vqa", "flat_mlp_size": 32},
        "search": {"strategy": "darts", "epochs": 2, "warmup_epochs": 1, "arch_every": 2, "batch_size": 8,
                   "arch_batch_size": 8, "max_steps_per_epoch": 3, "num_threads": 1},
        "eval": {"batch_size": 16},
    })
    out = tmp_path_factory.mktemp("search")
    threads = torch.get_num_threads()
    try:
        run_search(cfg, LocalContext(out), data)  # sets its own thread count (search.num_threads)
    finally:
        torch.set_num_threads(threads)
    return cfg, out, data


def test_fine_tuning_trains_only_paths_through_the_fixed_choice(searched):
    cfg, out, data = searched
    base, head, resolved = load_supernet(cfg, out, data.info)
    sub, sub_head = copy.deepcopy(base), copy.deepcopy(head)
    fixed = ("dec", 0, base.pools["dec"].index("guided_att"))
    cost = fine_tune(sub, sub_head, resolved, data, fixed, epochs=1, seed=3)
    assert cost["steps"] == 3 and cost["cpu_s"] > 0  # max_steps_per_epoch
    changed = {name for name, p in sub.named_parameters() if not torch.equal(p, dict(base.named_parameters())[name])}
    first = {name for name in changed if name.startswith("decoder.0.")}
    # block dec.0 trained its fixed candidate (GA) and nothing else; other blocks trained some candidates
    assert first and all(name.startswith("decoder.0.ops.guided_att.") for name in first), sorted(first)
    assert any(name.startswith("decoder.1.") for name in changed) and any(name.startswith("encoder.") for name in changed)
    assert not any(name.endswith("alpha") for name in changed)  # architecture weights untouched


def test_uniform_plan_keeps_the_fixed_block_and_covers_the_rest():
    pools = {"enc": ("self_att", "feed_forward"), "dec": ("self_att", "rel_self_att", "guided_att", "feed_forward")}
    generator = torch.Generator().manual_seed(0)
    plans = [uniform_plan(pools, {"enc": 2, "dec": 3}, ("dec", 1, 3), generator) for _ in range(200)]
    assert all(p.dec.index[1] == 3 for p in plans)
    assert {p.dec.index[0] for p in plans} == {0, 1, 2, 3} and {p.enc.index[1] for p in plans} == {0, 1}


def test_estimates_come_from_the_sub_supernet_of_each_choice_and_repeat_per_seed(searched):
    cfg, out, data = searched
    first = fewshot_estimates(cfg, out, data, SPECS, block="dec.0", epochs=1, seed=5)
    assert set(first["scores"]) == set(SPECS) and all(0.0 <= v <= 100.0 for v in first["scores"].values())
    assert set(first["fine_tuning"]) == {"guided_att", "feed_forward"}  # one sub-supernet per choice present
    again = fewshot_estimates(cfg, out, data, SPECS, block="dec.0", epochs=1, seed=5)
    assert again["scores"] == first["scores"]  # the same seed, the same estimate (CPU-seconds aside)
    # "c" alone chose FFN at dec.0: its score is that of the FFN sub-supernet, fine-tuned as above
    base, head, resolved = load_supernet(cfg, out, data.info)
    sub, sub_head = copy.deepcopy(base), copy.deepcopy(head)
    fine_tune(sub, sub_head, resolved, data, ("dec", 0, base.pools["dec"].index("feed_forward")), epochs=1, seed=5)
    alone = score_paths(sub.eval(), sub_head.eval(), resolved, data, {"c": ArchSpec.from_dict(SPECS["c"])})
    assert first["scores"]["c"] == alone["c"]


@pytest.mark.parametrize("block", ["dec", "dec.x", "text.0", "enc.-1"])
def test_a_bad_split_block_names_the_expected_form(block):
    with pytest.raises(ValueError, match=r"<chain>\.<index>"):
        parse_block(block)


def test_a_split_block_beyond_the_depth_is_refused(searched):
    cfg, out, data = searched
    with pytest.raises(ValueError, match="dec.5: a has 3 dec blocks"):
        fewshot_estimates(cfg, out, data, {"a": SPECS["a"]}, block="dec.5")
