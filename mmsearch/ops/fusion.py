"""Fusion blocks: where and how the text and region streams interact.

Single-stream ops (registered in :data:`~mmsearch.ops.base.OPS`, the residual-op signature
``op(x, x_mask, y=None, y_mask=None, rel_bias_embed=None) -> x``):

* ``t2r_att`` (:class:`TextToRegionAttention`), the mirror of GA: the *text* stream's queries
  attend to the region stream ``y`` (keys/values, padding mask ``y_mask``):
  ``LN(t + Drop(MHA(q=t, k=r, v=r; r_mask)))``. (``guided_att`` is regions attending to text.)
* ``joint_rel_self_att`` (:class:`JointRelationSelfAttention`): self-attention over the joint
  stream ``[text ; regions]`` (:mod:`mmsearch.ops.streams`) whose region-region logits get RSA's
  box-geometry term ``log(clamp(Linear(rel_bias_embed), 1e-6))`` per head; text-text and
  text-region pairs get none. (Plain joint self-attention is ``self_att`` on the joint stream.)

Two-stream ops (registry :data:`PAIR_OPS`, ``op(text, text_mask, regions, region_mask,
rel_bias_embed=None) -> (text, regions)``), the same constructor settings as the residual ops:

* ``co_att`` (:class:`CoAttention`, ViLBERT's co-attention): in one block the text attends to
  the regions (``t2r_att``) and the regions to the text (``guided_att``), both from the block's
  inputs, each with its own weights and residual + LayerNorm.
* ``early_sum`` (:class:`EarlySummation`), the learned token-wise form of early summation. The
  classic form ``z_i = a t_i + b r_i`` needs the two sequences aligned position by position;
  text tokens and image regions are not. So every token gets an attention-pooled summary of
  the *other* modality, weighted per token and per channel by a learned gate::

      s_r = P_r( sum_j softmax_j(w_r . r_j) r_j )        (real regions only; likewise s_t)
      t_i' = t_i + sigmoid(G_t [t_i ; s_r]) * s_r        (per channel)
      r_j' = r_j + sigmoid(G_r [r_j ; s_t]) * s_t

  The gate decides per token how much of the other modality to add (the classic fixed weights
  ``a, b`` become learned, input-dependent ones); the cost is two pooling vectors and two
  linear maps, negligible next to an attention block. No LayerNorm (the classic form has none).

All attention runs through :func:`mmsearch.ops.attention.attend` (SDPA, the fused kernel
whenever there is no attention dropout on CPU). Outputs at real positions never depend on
padded positions (keys at padding are masked, pooling is masked).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsearch.ops.attention import key_padding_bias, mask_value
from mmsearch.ops.base import OPS, check_mask
from mmsearch.ops.blocks import GuidedAttention, RelationSelfAttention
from mmsearch.registry import Registry

#: Two-stream ops: ``op(text, text_mask, regions, region_mask, rel_bias_embed=None) -> (text, regions)``.
PAIR_OPS: Registry[Callable[..., nn.Module]] = Registry("two-stream op")


@OPS.register("t2r_att", aliases=("text_to_region_att",))
class TextToRegionAttention(GuidedAttention):
    """Text queries, region keys/values: the mirror of ``guided_att`` (runs on the text stream)."""

    query_stream = "text"


@OPS.register("joint_rel_self_att")
class JointRelationSelfAttention(RelationSelfAttention):
    """Self-attention over ``[text ; regions]`` with box geometry on region-region pairs only.

    ``rel_bias_embed`` is ``[B, N, N, relation_dim]`` for the *last* N positions of ``x`` (the
    regions of the joint stream); the first ``L - N`` positions (text) get no geometry term.
    """

    joint_only = True

    def transform(self, x, x_mask, y, y_mask, rel_bias_embed):  # noqa: D102
        b, length, _ = x.shape
        if rel_bias_embed is None:
            raise ValueError("joint_rel_self_att needs rel_bias_embed, the embedded box geometry [B, N, N, relation_dim]")
        n = rel_bias_embed.shape[1]
        if rel_bias_embed.shape[0] != b or rel_bias_embed.shape[2] != n or not 0 < n <= length:
            raise ValueError(f"rel_bias_embed must be [{b}, N, N, D] with N <= {length} regions, got {tuple(rel_bias_embed.shape)}")
        return self.attend_with_relation(x, x_mask, rel_bias_embed, offset=length - n)  # no geometry for text pairs


@PAIR_OPS.register("co_att", aliases=("co_attention",))
class CoAttention(nn.Module):
    """Both streams exchange queries in one block (ViLBERT); each update reads the block's inputs."""

    def __init__(self, hidden: int, **settings: object) -> None:
        super().__init__()
        self.text_att = TextToRegionAttention(hidden, **settings)  # type: ignore[arg-type]
        self.region_att = GuidedAttention(hidden, **settings)  # type: ignore[arg-type]

    def forward(self, text: Tensor, text_mask: Tensor | None, regions: Tensor, region_mask: Tensor | None,
                rel_bias_embed: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return (
            self.text_att(text, text_mask, regions, region_mask),
            self.region_att(regions, region_mask, text, text_mask),
        )


class _AttentionPool(nn.Module):
    """``[B, L, H]`` + mask -> ``[B, H]``: softmax over real positions of a learned score, then a projection."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.score = nn.Linear(hidden, 1, bias=False)  # a bias would cancel in the softmax
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        scores = self.score(x).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(mask, mask_value(scores.dtype))
        return self.proj(torch.einsum("bl,blh->bh", torch.softmax(scores, dim=-1), x))


@PAIR_OPS.register("early_sum", aliases=("early_summation",))
class EarlySummation(nn.Module):
    """Learned, token-wise gated early summation (see the module docstring for the math)."""

    def __init__(self, hidden: int, **settings: object) -> None:
        super().__init__()
        self.text_summary = _AttentionPool(hidden)  # s_t, added to the regions
        self.region_summary = _AttentionPool(hidden)  # s_r, added to the text
        self.text_gate = nn.Linear(2 * hidden, hidden)  # G_t
        self.region_gate = nn.Linear(2 * hidden, hidden)  # G_r

    @staticmethod
    def _add(x: Tensor, summary: Tensor, gate: nn.Linear) -> Tensor:
        s = summary[:, None, :].expand_as(x)
        return x + torch.sigmoid(gate(torch.cat((x, s), dim=-1))) * s

    def forward(self, text: Tensor, text_mask: Tensor | None, regions: Tensor, region_mask: Tensor | None,
                rel_bias_embed: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_mask(text_mask, text.shape[0], text.shape[1], "text_mask")
        check_mask(region_mask, regions.shape[0], regions.shape[1], "region_mask")
        s_t = self.text_summary(text, text_mask)
        s_r = self.region_summary(regions, region_mask)
        return self._add(text, s_r, self.text_gate), self._add(regions, s_t, self.region_gate)


def build_pair_op(name: str, hidden: int, **settings: object) -> nn.Module:
    """Instantiate the two-stream op registered as ``name`` with the shared op settings."""
    return PAIR_OPS.get(name)(hidden, **settings)


def self_attention_weights(op: nn.Module, x: Tensor, x_mask: Tensor | None, rel_bias_embed: Tensor | None = None) -> Tensor:
    """The attention map ``[B, heads, L, L]`` (rows sum to 1, no dropout) that a ``self_att`` or
    ``joint_rel_self_att`` op computes on ``x`` -- for measuring how much attention crosses
    modalities on the joint stream (:func:`mmsearch.ops.streams.cross_modal_mass`)."""
    attn = getattr(op, "attn", None)
    if attn is None or not attn.self_attention:
        raise ValueError(f"{type(op).__name__} is not a self-attention op")
    inputs = op.norm(x) if op.pre_norm else x
    q, k, _ = attn.project(inputs, None)
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(attn.head_dim)
    if isinstance(op, RelationSelfAttention):
        if rel_bias_embed is None:
            raise ValueError("a relation op needs rel_bias_embed")
        text = x.shape[1] - rel_bias_embed.shape[1]
        scores = scores + F.pad(op.relation_logits(rel_bias_embed), (text, 0, text, 0))
    padding = key_padding_bias(x_mask, x.dtype)
    if padding is not None:
        scores = scores + padding
    return torch.softmax(scores, dim=-1)
