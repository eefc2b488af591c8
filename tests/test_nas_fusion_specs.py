"""Fusion specs: the six patterns build from their spec alone and learn; bad specs fail at load;
MMnas's files load as before; MMnas's encoder-decoder as streams computes what DerivedNet does."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mmsearch.tasks import build_head, make_objective
from mmsearch.nas import (
    PATTERNS,
    ArchSpec,
    DerivedNet,
    FusionSpec,
    StreamNet,
    build_derived,
    load_arch_spec,
    load_spec,
    named_spec,
    pattern_spec,
    save_spec,
)
from mmsearch.nas.arch_spec import SPECS_DIR
from mmsearch.nas.stream_spec import allowed_ops
from tests.test_nas_tiny import make_batch, tiny_net

ANSWERS = 5


def _vqa_batch(seed: int = 0):
    batch = make_batch(batch=6, tokens=6, regions=7, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    scores = torch.zeros(6, ANSWERS)
    scores[torch.arange(6), torch.randint(0, ANSWERS, (6,), generator=g)] = 1.0
    return dataclasses.replace(batch, targets={"answer_scores": scores})


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pattern_builds_from_spec_and_learns(pattern):
    """Every pattern from its shipped file alone: 12 Adam steps on one batch lower the VQA loss."""
    spec = pattern_spec(pattern)
    torch.manual_seed(0)
    net = build_derived(spec, tiny_net(hidden=32, head_dim=16, box_feature=True))
    assert isinstance(net, StreamNet)
    head = build_head("vqa", 32, num_answers=ANSWERS, flat_mlp_size=32, dropout=0.0)
    objective = make_objective("vqa", num_answers=ANSWERS)
    opt = torch.optim.Adam(list(net.parameters()) + list(head.parameters()), lr=3e-3)
    batch = _vqa_batch()
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss, _ = objective.loss_from_outputs(net(batch, head), batch)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses
    used = {p for b in net.blocks for p in b.parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert used == {p for b in net.blocks for p in b.parameters()}  # every block's weights learn


def test_spec_round_trip(tmp_path):
    for pattern in PATTERNS:
        spec = pattern_spec(pattern).replace(task="vqa", seed=3)
        path = save_spec(spec, tmp_path / f"{pattern}.json")
        again = load_spec(path)
        assert isinstance(again, FusionSpec) and again.same_architecture(spec)
        assert again.replace(source=spec.source) == spec


def test_mmnas_files_load_as_before():
    for name in ("mmnas_vqa.json", "mmnas_vgd.json", "mmnas_itm.json", "mcan.json"):
        raw = (SPECS_DIR / name).read_bytes()
        spec = load_spec(SPECS_DIR / name)
        assert isinstance(spec, ArchSpec) and spec == load_arch_spec(SPECS_DIR / name)
        assert (SPECS_DIR / name).read_bytes() == raw and "blocks" not in json.loads(raw)


def test_encoder_decoder_as_streams_equals_derived_net():
    """MMnas's VQA genotype written as text then image blocks computes exactly what DerivedNet does."""
    arch = named_spec("mmnas_vqa").replace(enc=named_spec("mmnas_vqa").enc[:4], dec=named_spec("mmnas_vqa").dec[:6])
    net_cfg = tiny_net(hidden=32, head_dim=16)
    torch.manual_seed(0)
    derived = DerivedNet(arch, net_cfg).eval()
    streams = StreamNet(FusionSpec.from_arch_spec(arch), net_cfg, modality_norm=False).eval()
    streams.front.load_state_dict(derived.front.state_dict())
    for block, op in zip(streams.blocks, list(derived.encoder) + list(derived.decoder)):
        block.op.load_state_dict(op.state_dict())
    head = build_head("vqa", 32, num_answers=ANSWERS, flat_mlp_size=32).eval()
    batch = _vqa_batch()
    with torch.no_grad():
        torch.testing.assert_close(streams(batch, head)["logits"], derived(batch, head)["logits"])


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        ([{"stream": "text", "op": "self_att"}, {"op": "pool"}, {"stream": "joint", "op": "self_att"}],
         r"block 2 \(joint:self_att\) comes after the streams were pooled at block 1; allowed after pooling: text:feed_forward"),
        ([{"stream": "text", "op": "self_att"}, {"op": "split"}],
         r"block 1 \(split\): split needs a preceding concat; allowed here: text, image, both blocks, concat, pool"),
        ([{"stream": "audio", "op": "self_att"}], r"block 0 \(self_att\): unknown stream 'audio'; allowed streams: text, image, both, joint"),
        ([{"stream": "joint", "op": "self_att"}], r"block 0 \(joint:self_att\): a joint block needs a preceding concat"),
        ([{"op": "concat"}, {"stream": "text", "op": "self_att"}], r"block 1 \(text:self_att\): the streams are concatenated here"),
        ([{"stream": "text", "op": "rel_self_att"}], r"block 0 \(text\): op 'rel_self_att' cannot run on the text stream; allowed: self_att, feed_forward, t2r_att"),
        ([{"stream": "both", "op": "self_att"}], r"allowed: co_att, early_sum"),
        ([{"op": "concat"}], r"at least one block that runs an op"),
    ],
)
def test_bad_specs_fail_at_load_naming_the_block(tmp_path, blocks, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"blocks": blocks}))
    with pytest.raises(ValueError, match=message):
        load_spec(path)


def test_allowed_ops_per_stream():
    assert allowed_ops("text") == ("self_att", "feed_forward", "t2r_att")
    assert allowed_ops("image") == ("self_att", "guided_att", "rel_self_att", "feed_forward")
    assert allowed_ops("joint") == ("self_att", "feed_forward", "joint_rel_self_att")
    with pytest.raises(ValueError, match="decoder blocks cannot use"):
        ArchSpec(enc=("self_att",), dec=("joint_rel_self_att",))


def test_pool_gives_the_head_one_vector_per_stream():
    spec = FusionSpec(blocks=({"stream": "text", "op": "self_att"}, {"op": "pool"}, {"stream": "image", "op": "feed_forward"}))
    net = build_derived(spec, tiny_net(hidden=32, head_dim=16))
    seen = {}

    def head(text, text_mask, regions, region_mask):
        seen.update(text=text.shape, regions=regions.shape, masks=(text_mask.any(), region_mask.any()))
        return {"logits": text[:, 0] + regions[:, 0]}

    net(_vqa_batch(), head)
    assert seen == {"text": (6, 1, 32), "regions": (6, 1, 32), "masks": (torch.tensor(False), torch.tensor(False))}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pattern_training_configs_validate_and_build(pattern):
    """configs/train/fusion/<pattern>.yaml: a valid training config naming the pattern, whose network builds."""
    from pathlib import Path

    from mmsearch.config import load_config
    from mmsearch.recipes.train_derived.arch import resolve_arch
    from mmsearch.recipes.train_derived.config import TrainDerivedConfig

    path = Path(__file__).resolve().parents[1] / "configs" / "train" / "fusion" / f"{pattern}.yaml"
    cfg = load_config(TrainDerivedConfig, path)
    spec = resolve_arch(cfg.arch)
    assert isinstance(spec, FusionSpec) and spec.pattern == pattern and spec.same_architecture(pattern_spec(pattern))
    assert cfg.data.task == cfg.head.task == "vqa" and cfg.output_dir.endswith(pattern)
    net = tiny_net(hidden=cfg.model.hidden, head_dim=cfg.model.head_dim, box_feature=cfg.model.box_feature)
    assert sum(p.numel() for p in build_derived(spec, net).blocks.parameters()) > 0


def test_training_resolves_fusion_specs_from_names_files_dicts_and_search_dirs(tmp_path):
    from mmsearch.recipes.train_derived.arch import resolve_arch

    spec = pattern_spec("one_to_multi")
    save_spec(spec, tmp_path / "best_arch.json")
    for arch in ("fusion_one_to_multi", str(tmp_path / "best_arch.json"), str(tmp_path), spec.to_dict()):
        found = resolve_arch(arch)
        assert isinstance(found, FusionSpec) and found.same_architecture(spec), arch
    with pytest.raises(ValueError, match="split needs a preceding concat"):
        resolve_arch({"blocks": [{"op": "split"}]})


def test_fusion_networks_normalise_each_stream_before_the_streams_meet():
    """Projected region features come out of the front end far larger than the text LSTM's states;
    a fusion network layer-normalises each stream's embeddings (every token at unit RMS, as
    UNITER-style single-stream models do) so that a first block mixing them keeps the text. The
    MMnas networks keep the reference front end (its checkpoints import unchanged)."""
    net_cfg = tiny_net(hidden=32, head_dim=16)
    batch = _vqa_batch()
    torch.manual_seed(0)
    fused = StreamNet(pattern_spec("early_concat"), net_cfg)
    with torch.no_grad():
        streams = fused.front(batch)
    for x, mask in ((streams.text, streams.text_mask), (streams.regions, streams.region_mask)):
        rms = x[~mask].pow(2).mean(dim=-1).sqrt()
        torch.testing.assert_close(rms, torch.ones_like(rms), atol=1e-3, rtol=0)
    derived = DerivedNet(named_spec("mmnas_vqa").replace(enc=("self_att",) * 2, dec=("guided_att",) * 2), net_cfg)
    assert not [k for k in derived.front.state_dict() if k.startswith(("text_norm", "region_norm"))]
    assert {"text_norm.weight", "region_norm.weight"} <= set(fused.front.state_dict())
