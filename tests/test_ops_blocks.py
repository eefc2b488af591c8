"""Candidate ops: shapes, masking, fully padded rows, parity with MMnas's plain attention math, gradients."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmsearch.ops import OPS, RelationEmbedding, build_op, canonical_op_name
from mmsearch.ops.blocks import FeedForward, GuidedAttention, RelationSelfAttention, SelfAttention
from mmsearch.registry import UnknownNameError

H = 64
HEAD_DIM = 32


def _boxes(b: int, n: int, g: torch.Generator) -> torch.Tensor:
    xy = torch.rand(b, n, 2, generator=g) * 80
    return torch.cat([xy, xy + torch.rand(b, n, 2, generator=g) * 30 + 1], dim=-1)


def _inputs(b=3, nx=6, ny=5, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, nx, H, generator=g, dtype=dtype)
    y = torch.randn(b, ny, H, generator=g, dtype=dtype)
    x_mask = torch.arange(nx)[None] >= torch.tensor([nx, nx - 2, 1][:b])[:, None]
    y_mask = torch.arange(ny)[None] >= torch.tensor([ny, 2, ny - 1][:b])[:, None]
    boxes = _boxes(b, nx, g)
    return x, x_mask, y, y_mask, boxes


def _op(name: str, seed: int = 0, **settings):
    torch.manual_seed(seed)
    settings = {"head_dim": HEAD_DIM, "dropout": 0.0, **settings}
    return build_op(name, H, **settings).eval()


def _run(op, x, x_mask, y, y_mask, boxes, rel_embed_module):
    rel = rel_embed_module(boxes) if op.uses_relation else None
    return op(x, x_mask, y, y_mask, rel)


@pytest.fixture()
def rel_module():
    torch.manual_seed(1)
    return RelationEmbedding(64)


# --- reference: MMnas's MHAtt / RelMHAtt / FFN written as plain math -----------------------------


def reference_attention(op, x, x_mask, y, y_mask, rel_embed):
    """MMnas: separate q/k/v (here: rows of our fused weights), q k^T / sqrt(d) [+ log(clamp(relu(W r), 1e-6))],
    masked_fill(-1e9), softmax, @ v, merge; post-LN residual."""
    attn = op.attn
    heads, d = attn.heads, attn.head_dim
    if attn.self_attention:
        wq, wk, wv = attn.qkv.weight.split(H, dim=0)
        keys, kmask = x, x_mask
    else:
        wq = attn.q.weight
        wk, wv = attn.kv.weight.split(H, dim=0)
        keys, kmask = y, y_mask

    def heads_of(t, w):
        return (t @ w.T).view(t.shape[0], t.shape[1], heads, d).transpose(1, 2)

    q, k, v = heads_of(x, wq), heads_of(keys, wk), heads_of(keys, wv)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    if isinstance(op, RelationSelfAttention):
        r = torch.relu(rel_embed @ op.relation_proj.weight.T + op.relation_proj.bias)  # [B, N, N, heads]
        scores = scores + torch.log(torch.clamp(r, min=1e-6)).permute(0, 3, 1, 2)
    scores = scores.masked_fill(kmask[:, None, None, :], -1e9)
    att = torch.softmax(scores, dim=-1)
    out = (att @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], H) @ attn.merge.weight.T
    return F.layer_norm(x + out, (H,), op.norm.weight, op.norm.bias, op.norm.eps)


def reference_ffn(op, x):
    inner = torch.relu(x @ op.inner.weight.T + op.inner.bias)
    out = inner @ op.outer.weight.T + op.outer.bias
    return F.layer_norm(x + out, (H,), op.norm.weight, op.norm.bias, op.norm.eps)


# --- tests -----------------------------------------------------------------------------------------


def test_registry_names_and_aliases():
    assert OPS.names() == ["self_att", "guided_att", "rel_self_att", "feed_forward", "t2r_att", "joint_rel_self_att"]
    assert canonical_op_name("self_att_64") == "self_att"
    assert canonical_op_name("guided_att_64") == "guided_att"
    assert canonical_op_name("rel_self_att_64") == "rel_self_att"
    assert isinstance(build_op("rel_self_att_64", H, head_dim=HEAD_DIM), RelationSelfAttention)
    with pytest.raises(UnknownNameError, match="known ops: self_att, guided_att, rel_self_att, feed_forward, t2r_att"):
        canonical_op_name("sep_conv_3")


@pytest.mark.parametrize("name", OPS.names())
def test_shapes_and_finite(name, rel_module):
    x, x_mask, y, y_mask, boxes = _inputs()
    out = _run(_op(name), x, x_mask, y, y_mask, boxes, rel_module)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", OPS.names())
def test_padding_does_not_change_real_outputs(name, rel_module):
    """Pad both streams further and scribble on the padding: real positions are unchanged."""
    x, x_mask, y, y_mask, boxes = _inputs()
    op = _op(name)
    ref = _run(op, x, x_mask, y, y_mask, boxes, rel_module)

    g = torch.Generator().manual_seed(7)
    extra = 4
    pad = torch.ones(3, extra, dtype=torch.bool)
    x_mask2 = torch.cat([x_mask, pad], 1)
    y_mask2 = torch.cat([y_mask, pad], 1)
    x2 = torch.cat([x, torch.zeros(3, extra, H)], 1)
    y2 = torch.cat([y, torch.zeros(3, extra, H)], 1)
    x2 = torch.where(x_mask2[..., None], torch.randn(x2.shape, generator=g) * 5, x2)
    y2 = torch.where(y_mask2[..., None], torch.randn(y2.shape, generator=g) * 5, y2)
    boxes2 = torch.cat([boxes, _boxes(3, extra, g)], 1)
    out = _run(op, x2, x_mask2, y2, y_mask2, boxes2, rel_module)

    real = ~x_mask
    torch.testing.assert_close(out[:, : x.shape[1]][real], ref[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", OPS.names())
def test_fully_padded_rows_are_finite(name, rel_module):
    """A sample whose keys are all padding (no text, or no regions) yields finite outputs and grads."""
    x, x_mask, y, y_mask, boxes = _inputs()
    x_mask = x_mask.clone()
    y_mask = y_mask.clone()
    x_mask[1] = True
    y_mask[1] = True
    x = x.requires_grad_(True)
    op = _op(name).train()
    out = _run(op, x, x_mask, y, y_mask, boxes, rel_module)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in op.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", OPS.names())
def test_matches_mmnas_plain_math(name, rel_module):
    """SDPA with the combined additive bias == MMnas's explicit attention (incl. the RSA log-bias)."""
    x, x_mask, y, y_mask, boxes = _inputs(dtype=torch.float64)
    op = _op(name).double()
    rel_module = rel_module.double()
    with torch.no_grad():
        if isinstance(op, RelationSelfAttention):
            # Spread the relation weights so that some pairs clamp at 1e-6 and others do not.
            op.relation_proj.weight.normal_(0, 1.0)
            op.relation_proj.bias.fill_(0.1)
        rel = rel_module(boxes.double())
        out = op(x, x_mask, y, y_mask, rel if op.uses_relation else None)
        if isinstance(op, FeedForward):
            ref = reference_ffn(op, x)
        else:
            ref = reference_attention(op, x, x_mask, y, y_mask, rel)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    if isinstance(op, RelationSelfAttention):
        logits = op.relation_logits(rel)
        assert (logits == math.log(1e-6)).any() and (logits > math.log(1e-6)).any()


def test_matches_reference_in_float32(rel_module):
    x, x_mask, y, y_mask, boxes = _inputs()
    op = _op("rel_self_att")
    with torch.no_grad():
        rel = rel_module(boxes)
        torch.testing.assert_close(op(x, x_mask, None, None, rel), reference_attention(op, x, x_mask, y, y_mask, rel), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", OPS.names())
def test_gradient_reaches_every_parameter_and_input(name, rel_module):
    x, x_mask, y, y_mask, boxes = _inputs()
    x = x.requires_grad_(True)
    y = y.requires_grad_(True)
    op = _op(name, dropout=0.1).train()
    out = _run(op, x, x_mask, y, y_mask, boxes, rel_module)
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    if op.uses_memory:
        assert y.grad is not None and y.grad.abs().sum() > 0
    for pname, p in op.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
    if op.uses_relation:
        assert any(p.grad is not None for p in rel_module.parameters())


@pytest.mark.parametrize("cls", [SelfAttention, GuidedAttention, RelationSelfAttention, FeedForward])
def test_pre_norm_formula(cls, rel_module):
    """pre-LN: x + f(LN(x)); checked against the post-LN op's transform."""
    x, x_mask, y, y_mask, boxes = _inputs()
    torch.manual_seed(3)
    op = cls(H, head_dim=HEAD_DIM, dropout=0.0, norm="pre").eval()
    rel = rel_module(boxes) if op.uses_relation else None
    with torch.no_grad():
        out = op(x, x_mask, y, y_mask, rel)
        expected = x + op.transform(op.norm(x), x_mask, y, y_mask, rel)
        post = op.norm(x + op.transform(x, x_mask, y, y_mask, rel))
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out, post)


def test_attention_bias_option_and_mmnas_parameter_counts():
    # MMnas counts at H=512 (no attention bias): SA/GA 1,049,600; RSA 1,050,120; FFN 2,100,736.
    counts = {name: sum(p.numel() for p in build_op(name, 512).parameters()) for name in OPS.names()}
    assert counts == {"self_att": 1_049_600, "guided_att": 1_049_600, "rel_self_att": 1_050_120, "feed_forward": 2_100_736,
                      "t2r_att": 1_049_600, "joint_rel_self_att": 1_050_120}
    with_bias = sum(p.numel() for p in build_op("self_att", 512, attn_bias=True).parameters())
    assert with_bias == counts["self_att"] + 4 * 512
    assert build_op("self_att", 512).attn.heads == 8


def test_bad_settings_and_inputs_fail_clearly(rel_module):
    with pytest.raises(ValueError, match="multiple of the head width"):
        build_op("self_att", 100, head_dim=64)
    with pytest.raises(ValueError, match="norm placement"):
        build_op("feed_forward", 64, norm="middle")
    x, x_mask, y, y_mask, boxes = _inputs()
    with pytest.raises(ValueError, match="needs the other stream"):
        _op("guided_att")(x, x_mask)
    with pytest.raises(ValueError, match="needs rel_bias_embed"):
        _op("rel_self_att")(x, x_mask)
    with pytest.raises(ValueError, match="x_mask must be a bool tensor"):
        _op("self_att")(x, x_mask.float())
    with pytest.raises(ValueError, match="rel_bias_embed must be"):
        _op("rel_self_att")(x, x_mask, None, None, rel_module(boxes[:, :3]))
