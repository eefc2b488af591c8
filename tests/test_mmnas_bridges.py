"""Bridges to MMnas users: MMnas's LayerNorm as an option; VQA answers scored as the official
evaluation script does (prediction fully normalised, human answers only de-punctuated)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mmsearch.data.loaders import load_vqa_v2, normalize_answer
from mmsearch.data.loaders.source import RealDataSource, load_real_split
from mmsearch.data.loaders.vqa_answers import official_scores, process_punctuation, soft_scores
from mmsearch.nas import NetConfig
from mmsearch.ops import MMnasLayerNorm, build_op, make_layer_norm
from test_loaders_vqa import vqa_root  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]


def test_mmnas_layer_norm_is_unbiased_std_plus_eps_and_differs_from_torch_by_about_one_over_2h():
    hidden = 64
    x = torch.randn(3, 5, hidden, dtype=torch.float64)
    mmnas = MMnasLayerNorm(hidden).double()
    with torch.no_grad():
        mmnas.weight.uniform_(0.5, 1.5)
        mmnas.bias.uniform_(-0.1, 0.1)
    a = x.numpy()
    centred = a - a.mean(-1, keepdims=True)
    expected = mmnas.weight.detach().numpy() * centred / (a.std(-1, ddof=1, keepdims=True) + 1e-6) + mmnas.bias.detach().numpy()
    np.testing.assert_allclose(mmnas(x).detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    plain = make_layer_norm(hidden, "torch").double()
    plain.load_state_dict(mmnas.state_dict())  # same parameter names: checkpoints load into either
    ours, theirs = (plain(x) - plain.bias).detach(), (mmnas(x) - mmnas.bias).detach()
    ratio = (theirs / ours).numpy()
    np.testing.assert_allclose(ratio, np.sqrt((hidden - 1) / hidden), rtol=1e-5)  # eps aside, exact
    assert abs(1 - ratio.mean() - 1 / (2 * hidden)) < 1 / (8 * hidden**2) + 1e-5


def test_the_net_config_chooses_the_layer_norm_of_every_op():
    settings = NetConfig(hidden=32, head_dim=16, vocab_size=10, layer_norm="mmnas").op_settings()
    assert settings["layer_norm"] == "mmnas"
    for name in ("self_att", "guided_att", "rel_self_att", "feed_forward"):
        assert isinstance(build_op(name, 32, **settings).norm, MMnasLayerNorm)
        assert isinstance(build_op(name, 32, head_dim=16).norm, nn.LayerNorm)  # default: torch's
    with pytest.raises(ValueError, match="layer_norm must be one of"):
        make_layer_norm(8, "apex")
    from mmsearch.config import load_config
    from mmsearch.recipes.train_derived.config import TrainDerivedConfig

    cfg = load_config(TrainDerivedConfig, ROOT / "configs" / "train" / "vqa.yaml", ["model.layer_norm=mmnas"])
    assert cfg.model.net_config(text_input="tokens", probe=True).layer_norm == "mmnas"  # model.layer_norm reaches the net


def _official_loop(pred: str, human: list[str]) -> float:
    """The official script's loop, restated: the prediction fully normalised, the human answers
    de-punctuated only when they disagree, min(1, matches / 3) averaged over leave-one-out subsets."""
    pred = normalize_answer(pred)
    gts = [process_punctuation(h) for h in human] if len(set(human)) > 1 else list(human)
    accs = [min(1.0, sum(g == pred for j, g in enumerate(gts) if j != i) / 3) for i in range(len(gts))]
    return sum(accs) / len(accs)


@pytest.mark.parametrize("human", [
    ["Yes."] * 10,
    ["yes"] * 4 + ["Yes."] * 3 + ["no"] * 3,
    ["two"] * 2 + ["2"] + ["3"] * 3 + ["three"] + ["a few"] * 3,
    ["red"] * 9 + ["the red bus"],
    ["2"] * 2 + ["two"] * 8,
])
def test_official_scores_reproduce_the_official_evaluation(human):
    scores = official_scores(human)
    for pred in ("yes", "no", "2", "3", "few", "red", "red bus", "two"):
        assert scores.get(normalize_answer(pred), 0.0) == pytest.approx(_official_loop(pred, human))


def test_official_and_normalised_scores_differ_where_the_issue_says():
    assert soft_scores(["Yes."] * 10) == {"yes": 1.0}
    assert official_scores(["Yes."] * 10) == {"Yes.": 1.0}  # never matches a prediction: "yes" scores 0
    assert soft_scores(["two"] * 10)["2"] == 1.0 and "2" not in official_scores(["two"] * 10)


def test_the_loader_scores_val_and_test_officially_on_request_and_trains_on_normalised(vqa_root):  # noqa: F811
    root, features = vqa_root
    count = load_vqa_v2(root, "train", feature_root=features, answer_processing="official").vqa[1]
    assert count.answers == {"two": 0.6, "2": 0.3, "3": 0.9, "three": 0.3, "a few": 0.9}
    source = RealDataSource(dataset="vqa_v2", annotations=str(root), feature_root=str(features),
                            subsets={"val": "train2014"}, eval_answers="official")
    assert load_real_split(source, "val").vqa[1].answers == count.answers
    assert load_real_split(source, "train").vqa[1].answers == {"2": 0.9, "3": 1.0, "few": 0.9}  # targets: normalised
    assert RealDataSource(dataset="vqa_v2", annotations=".", feature_root=".").eval_answers == "normalized"  # the default
