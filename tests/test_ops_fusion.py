"""Fusion blocks: plain-math parity, padding never changes real outputs, stream bookkeeping."""
from __future__ import annotations

import math

import pytest
import torch

from mmsearch.ops import (
    OPS,
    PAIR_OPS,
    RelationEmbedding,
    build_op,
    build_pair_op,
    concat_streams,
    cross_modal_mass,
    split_streams,
)

H, HEAD_DIM = 32, 16


def _streams(b=3, t=5, n=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(b, t, H, generator=g, dtype=dtype)
    regions = torch.randn(b, n, H, generator=g, dtype=dtype)
    text_mask = torch.arange(t)[None] >= torch.tensor([t, t - 2, 1])[:, None]
    region_mask = torch.arange(n)[None] >= torch.tensor([n, 2, n - 1])[:, None]
    xy = torch.rand(b, n, 2, generator=g, dtype=dtype) * 80
    boxes = torch.cat([xy, xy + torch.rand(b, n, 2, generator=g, dtype=dtype) * 30 + 1], dim=-1)
    return text, text_mask, regions, region_mask, boxes


def _plain_attention(mha, query, keys, key_mask, extra_logits=None):
    """softmax(q k^T / sqrt(d) + extra, masked_fill(-1e9)) v, merged -- separate q/k/v matmuls."""
    heads, d = mha.heads, mha.head_dim
    if mha.self_attention:
        wq, wk, wv = mha.qkv.weight.split(mha.hidden, dim=0)
    else:
        wq = mha.q.weight
        wk, wv = mha.kv.weight.split(mha.hidden, dim=0)

    def split(x, w):
        return (x @ w.T).view(x.shape[0], x.shape[1], heads, d).transpose(1, 2)

    q, k, v = split(query, wq), split(keys, wk), split(keys, wv)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    if extra_logits is not None:
        scores = scores + extra_logits
    att = torch.softmax(scores.masked_fill(key_mask[:, None, None, :], -1e9), dim=-1)
    return (att @ v).transpose(1, 2).reshape(query.shape[0], query.shape[1], mha.hidden) @ mha.merge.weight.T


def _post_ln(op, x, delta):
    return torch.nn.functional.layer_norm(x + delta, (H,), op.norm.weight, op.norm.bias, op.norm.eps)


def _op(name):
    torch.manual_seed(0)
    return build_op(name, H, head_dim=HEAD_DIM, dropout=0.0).double().eval()


def _pair(name):
    torch.manual_seed(0)
    op = build_pair_op(name, H, head_dim=HEAD_DIM, dropout=0.0).double().eval()
    with torch.no_grad():  # non-trivial gates and pooling scores
        for p in op.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return op


def test_registries():
    assert {"t2r_att", "joint_rel_self_att"} <= set(OPS.names())
    assert PAIR_OPS.names() == ["co_att", "early_sum"]


def test_text_to_region_attention_matches_plain_math():
    text, tm, regions, rm, _ = _streams()
    op = _op("t2r_att")
    with torch.no_grad():
        out = op(text, tm, regions, rm)
        ref = _post_ln(op, text, _plain_attention(op.attn, text, regions, rm))
    torch.testing.assert_close(out, ref)


def test_co_attention_matches_plain_math_both_ways():
    text, tm, regions, rm, _ = _streams()
    op = _pair("co_att")
    with torch.no_grad():
        t_out, r_out = op(text, tm, regions, rm)
        t_ref = _post_ln(op.text_att, text, _plain_attention(op.text_att.attn, text, regions, rm))
        r_ref = _post_ln(op.region_att, regions, _plain_attention(op.region_att.attn, regions, text, tm))
    torch.testing.assert_close(t_out, t_ref)
    torch.testing.assert_close(r_out, r_ref)


def test_joint_attention_geometry_only_on_region_pairs():
    text, tm, regions, rm, boxes = _streams()
    op = _op("joint_rel_self_att")
    torch.manual_seed(2)
    rel_module = RelationEmbedding(64).double()
    with torch.no_grad():
        op.relation_proj.weight.normal_(0, 1.0)
        op.relation_proj.bias.fill_(0.1)
        rel = rel_module(boxes)
        joint, jm = concat_streams(text, tm, regions, rm)
        out = op(joint, jm, None, None, rel)
        t, n = text.shape[1], regions.shape[1]
        geo = torch.log(torch.clamp(torch.relu(rel @ op.relation_proj.weight.T + op.relation_proj.bias), min=1e-6)).permute(0, 3, 1, 2)
        extra = torch.zeros(3, op.attn.heads, t + n, t + n, dtype=joint.dtype)
        extra[:, :, t:, t:] = geo
        ref = _post_ln(op, joint, _plain_attention(op.attn, joint, joint, jm, extra))
        plain = build_op("self_att", H, head_dim=HEAD_DIM, dropout=0.0).double().eval()
        plain.load_state_dict({k: v for k, v in op.state_dict().items() if not k.startswith("relation_proj")})
    torch.testing.assert_close(out, ref)
    assert not torch.allclose(out, plain(joint, jm))  # the geometry term matters


def test_early_summation_matches_plain_math():
    text, tm, regions, rm, _ = _streams()
    op = _pair("early_sum")

    def summary(pool, x, mask):
        w = torch.softmax((x @ pool.score.weight.T).squeeze(-1).masked_fill(mask, -1e9), -1)
        return (w[..., None] * x).sum(1) @ pool.proj.weight.T + pool.proj.bias

    with torch.no_grad():
        t_out, r_out = op(text, tm, regions, rm)
        s_t, s_r = summary(op.text_summary, text, tm), summary(op.region_summary, regions, rm)
        st, sr = s_t[:, None].expand_as(regions), s_r[:, None].expand_as(text)
        t_ref = text + torch.sigmoid(torch.cat([text, sr], -1) @ op.text_gate.weight.T + op.text_gate.bias) * sr
        r_ref = regions + torch.sigmoid(torch.cat([regions, st], -1) @ op.region_gate.weight.T + op.region_gate.bias) * st
    torch.testing.assert_close(t_out, t_ref)
    torch.testing.assert_close(r_out, r_ref)


def _padded(x, mask, extra, g):
    pad = torch.ones(x.shape[0], extra, dtype=torch.bool)
    mask2 = torch.cat([mask, pad], 1)
    x2 = torch.cat([x, torch.zeros(x.shape[0], extra, H, dtype=x.dtype)], 1)
    return torch.where(mask2[..., None], torch.randn(x2.shape, generator=g, dtype=x.dtype) * 5, x2), mask2


@pytest.mark.parametrize("name", ["t2r_att", "joint_rel_self_att", "co_att", "early_sum"])
def test_padding_changes_no_real_output(name):
    """More padding in both streams, filled with noise (and noise boxes): real outputs unchanged."""
    text, tm, regions, rm, boxes = _streams()
    g = torch.Generator().manual_seed(5)
    text2, tm2 = _padded(text, tm, 3, g)
    regions2, rm2 = _padded(regions, rm, 4, g)
    boxes2 = torch.cat([boxes, torch.rand(3, 4, 4, generator=g, dtype=boxes.dtype) * 50], 1)
    torch.manual_seed(2)
    rel_module = RelationEmbedding(64).double()

    def run(t, t_mask, r, r_mask, b):
        with torch.no_grad():
            if name in PAIR_OPS:
                return _pair(name)(t, t_mask, r, r_mask)
            op = _op(name)
            if name == "t2r_att":
                return op(t, t_mask, r, r_mask), r
            joint, jm = concat_streams(t, t_mask, r, r_mask)
            return split_streams(op(joint, jm, None, None, rel_module(b)), t.shape[1])

    t_ref, r_ref = run(text, tm, regions, rm, boxes)
    t_out, r_out = run(text2, tm2, regions2, rm2, boxes2)
    torch.testing.assert_close(t_out[:, :5][~tm], t_ref[~tm])
    torch.testing.assert_close(r_out[:, :6][~rm], r_ref[~rm])


def test_concat_split_round_trip_and_cross_mass():
    text, tm, regions, rm, _ = _streams(dtype=torch.float32)
    joint, jm = concat_streams(text, tm, regions, rm)
    assert joint.shape == (3, 11, H) and torch.equal(jm, torch.cat([tm, rm], 1))
    t, r = split_streams(joint, 5)
    assert torch.equal(t, text) and torch.equal(r, regions)
    with pytest.raises(ValueError, match="does not split"):
        split_streams(joint, 11)
    with pytest.raises(ValueError, match="region_mask must be a bool"):
        concat_streams(text, tm, regions, rm.float())
    # Attention kept inside each modality -> 0; uniform over all 11 keys -> 6/11 or 5/11 per query.
    block = torch.zeros(1, 1, 11, 11)
    block[..., :5, :5] = 1 / 5
    block[..., 5:, 5:] = 1 / 6
    assert float(cross_modal_mass(block, 5)) == 0.0
    uniform = torch.full((1, 2, 11, 11), 1 / 11)
    assert float(cross_modal_mass(uniform, 5)) == pytest.approx((5 * 6 / 11 + 6 * 5 / 11) / 11)


def test_self_attention_weights_reproduce_the_op():
    """The measured attention map, applied to the values, gives the op's own output."""
    from mmsearch.ops import self_attention_weights

    text, tm, regions, rm, boxes = _streams()
    op = _op("joint_rel_self_att")
    torch.manual_seed(2)
    rel = RelationEmbedding(64).double()(boxes)
    joint, jm = concat_streams(text, tm, regions, rm)
    with torch.no_grad():
        weights = self_attention_weights(op, joint, jm, rel)
        _, _, v = op.attn.project(joint, None)
        merged = (weights @ v).transpose(1, 2).reshape(3, 11, H) @ op.attn.merge.weight.T
        torch.testing.assert_close(_post_ln(op, joint, merged), op(joint, jm, None, None, rel))
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, op.attn.heads, 11, dtype=weights.dtype))
    assert float(weights[..., jm[:, None, None, :].expand_as(weights)].max()) < 1e-12  # no mass on padding
