"""The shortlist stage's pure parts: candidates, anchors, the winner on val, config validation."""
import math

import pytest

from mmsearch.config import ConfigError, validate_config
from mmsearch.evaluation import ShortlistSettings, pick_winner, shortlist_candidates
from mmsearch.evaluation.shortlist import estimate_vs_retrained, search_agreement
from mmsearch.nas import block_entropy

PRIOR = {"enc": ["self_att", "feed_forward"], "dec": ["rel_self_att", "guided_att"]}  # mmnas_prior at 2 + 2
OTHER = {"enc": ["feed_forward", "feed_forward"], "dec": ["guided_att", "guided_att"]}
THIRD = {"enc": ["self_att", "self_att"], "dec": ["self_att", "self_att"]}


def test_candidates_are_the_top_k_distinct_plus_anchors_in_a_fixed_order():
    searched = [
        {"trial_id": "t3", "spec": OTHER, "estimate": 40.0},
        {"trial_id": "t1", "spec": PRIOR, "estimate": 50.0},
        {"trial_id": "t2", "spec": PRIOR, "estimate": 45.0},  # the same architecture again: not a new candidate
        {"trial_id": "t4", "spec": THIRD, "estimate": 40.0},  # ties with t3 on estimate: trial id decides
        {"trial_id": "t5", "spec": THIRD, "estimate": math.nan},
    ]
    rows = shortlist_candidates(searched, 2, ("mcan", "mmnas_prior"), (2, 2))
    assert [r["label"] for r in rows] == ["searched1", "searched2", "mcan"]
    assert rows[0]["origin"] == "search trial t1" and rows[0]["also_found_by"] == ["t2"]
    assert rows[0]["anchor"] == "mmnas_prior"  # the prior was found by the search: trained once, marked
    assert rows[1]["origin"] == "search trial t3" and rows[1]["arch"] == "FFN FFN | GA GA"
    assert rows[2]["spec"] == {"enc": [["self_att"], ["feed_forward"]], "dec": [["self_att"], ["guided_att"]]} and rows[2]["estimate"] is None
    assert shortlist_candidates(list(reversed(searched)), 2, ("mcan", "mmnas_prior"), (2, 2)) == rows  # order-free
    assert [r["label"] for r in shortlist_candidates(searched, 5, (), (2, 2))] == ["searched1", "searched2", "searched3"]


POOLS = {"enc": ["self_att", "feed_forward"], "dec": ["self_att", "rel_self_att", "guided_att", "feed_forward"]}


def test_pool_draws_follow_the_searches_probabilities_and_are_distinct_and_reproducible():
    from collections import Counter

    # a search sure of SA in the encoder and of GA in the first decoder block, unsure of the second
    peaked = {**OTHER, "op_pools": POOLS, "probs": {"enc": [[1.0, 0.0], [1.0, 0.0]],
                                                    "dec": [[0.0, 0.0, 1.0, 0.0], [0.25, 0.25, 0.25, 0.25]]}}
    searched = [{"trial_id": "t1", "spec": peaked, "estimate": 50.0}]
    rows = shortlist_candidates(searched, 1, ("mcan",), (2, 2), pool=3, pool_from="search", pool_seed=7)
    assert [r["label"] for r in rows] == ["searched1", "pool1", "pool2", "pool3", "mcan"]
    pool = rows[1:4]
    assert all(r["origin"] == "drawn from search trial t1's op probabilities" and r["estimate"] is None for r in pool)
    # only the unsure block varies; every draw differs from the others, the searched one and the anchor
    assert all(r["spec"]["enc"] == [["self_att"], ["self_att"]] and r["spec"]["dec"][0] == ["guided_att"] for r in pool)
    assert len({r["arch"] for r in rows}) == len(rows)
    assert rows == shortlist_candidates(searched, 1, ("mcan",), (2, 2), pool=3, pool_from="search", pool_seed=7)
    # the probabilities give 4 architectures (the searched FFN FFN | GA GA is not one of them): 4 draws at most
    assert len(shortlist_candidates(searched, 1, (), (2, 2), pool=9, pool_seed=1)) == 1 + 4
    # uniform draws cover the pools: over many seeds every op of every pool turns up
    ops = Counter(op for seed in range(20) for r in shortlist_candidates([], 0, (), (2, 2), pool=3, pool_from="uniform", pool_seed=seed)
                  for chain in ("enc", "dec") for [op] in r["spec"][chain])
    assert set(ops) == set(POOLS["dec"])
    uniform = shortlist_candidates(searched, 0, (), (2, 2), pool=2, pool_from="uniform", pool_seed=3)
    assert [r["origin"] for r in uniform] == ["drawn uniformly from the search space"] * 2


def test_winner_is_chosen_on_val_among_full_budget_trials_only():
    rows = [
        {"label": "a", "val": 50.0, "test": 10.0, "epoch": 4},
        {"label": "b", "val": 55.0, "test": 90.0, "epoch": 2},  # stopped by ASHA at epoch 2: cannot win
        {"label": "c", "val": 52.0, "test": 5.0, "epoch": 4},
        {"label": "d", "val": 52.0, "epoch": 4},
    ]
    assert pick_winner(rows, 4)["label"] == "c"  # best val; ties go to the earlier; test is never looked at
    with pytest.raises(ValueError, match="full 8 epochs"):
        pick_winner(rows, 8)
    assert estimate_vs_retrained([{"estimate": 1.0, "val": 2.0}, {"estimate": 2.0, "val": 1.0}, {"estimate": None, "val": 3.0}]) == \
        {"n": 2, "kendall_tau": pytest.approx(-1.0)}


def test_shortlist_section_is_validated_naming_the_key():
    assert validate_config(ShortlistSettings, {"enabled": True, "k": 2, "budget": 3, "grace_period": 1}).k == 2
    with pytest.raises(ConfigError, match="anchors"):
        validate_config(ShortlistSettings, {"anchors": ["mcan", "transformer"]})
    with pytest.raises(ConfigError, match="grace_period"):
        validate_config(ShortlistSettings, {"budget": 2, "grace_period": 3})
    with pytest.raises(ConfigError, match="k"):
        validate_config(ShortlistSettings, {"k": 0})
    with pytest.raises(ConfigError, match="unknown key"):
        validate_config(ShortlistSettings, {"top_k": 3})
    with pytest.raises(ConfigError, match="pool_from"):
        validate_config(ShortlistSettings, {"pool": 4, "pool_from": "probs"})


def test_agreement_and_entropy():
    pools = {"enc": ["self_att", "feed_forward"], "dec": ["self_att", "rel_self_att", "guided_att", "feed_forward"]}
    agree = search_agreement([PRIOR, PRIOR, OTHER], pools)
    assert agree["pairs"] == 3 and agree["mean"] == pytest.approx((1.0 + 0.5 + 0.5) / 3)  # P vs O: enc FFN and dec GA agree
    assert agree["chance"] == pytest.approx((0.5 + 0.5 + 0.25 + 0.25) / 4)
    entropy = block_entropy({"enc": [[0.5, 0.5], [1.0, 0.0]], "dec": [[0.25] * 4]})
    assert entropy["enc"] == pytest.approx([math.log(2), 0.0]) and entropy["dec"] == pytest.approx([math.log(4)])
    assert entropy["normalized"] == pytest.approx([1.0, 0.0, 1.0]) and entropy["normalized_mean"] == pytest.approx(2 / 3)


def test_agreement_of_fewer_than_two_searches_is_undefined_not_an_error():
    pools = {"enc": ["self_att", "feed_forward"], "dec": ["self_att", "guided_att"]}
    one = search_agreement([PRIOR], pools)
    assert one["pairs"] == 0 and math.isnan(one["mean"]) and one["chance"] == pytest.approx(0.5)
    assert search_agreement([], pools)["searches"] == 0
