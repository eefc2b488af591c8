"""The four candidate operations of the MMnas search space, registered in :data:`OPS`.

* ``self_att`` (SA, MMnas ``self_att_64``): ``LN(x + Drop(MHA(q=x, k=x, v=x; x_mask)))``.
* ``guided_att`` (GA, ``guided_att_64``): queries from the stream being processed (image
  regions in the decoder), keys/values from the other stream ``y`` (the text encoder output)
  with its padding mask ``y_mask``.
* ``rel_self_att`` (RSA, ``rel_self_att_64``): SA whose logits get, per head,
  ``log(clamp(ReLU(Linear(relation_dim -> heads)(rel_bias_embed)), 1e-6))`` before masking and
  softmax. ``rel_bias_embed`` ``[B, N, N, relation_dim]`` is the shared embedding of the box
  geometry (:class:`mmsearch.ops.embed.RelationEmbedding`), computed once per forward pass.
* ``feed_forward`` (FFN): ``LN(x + Drop(Linear(4H -> H)(Drop(ReLU(Linear(H -> 4H)(x))))))``.

MMnas's ``*_64`` names mean "head width 64"; they are aliases of the canonical ops, and the
head width actually used is the ``head_dim`` setting (default 64).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsearch.ops.attention import MultiHeadAttention, key_padding_bias
from mmsearch.ops.base import OPS, ResidualOp, check_mask
from mmsearch.ops.dropout import Dropout

RELATION_LOG_FLOOR = 1e-6  # MMnas clamps the relation weight here before the log (-13.8 logits)


def _attn_dropout(dropout: float, attn_dropout: float | None) -> float:
    """Attention-map dropout: ``dropout`` unless set separately (MMnas uses one rate for both).

    On CPU, SDPA runs its fused kernel only without dropout; with attention dropout in training
    it falls back to the unfused math path (matmul, softmax, dropout, matmul), as MMnas computes.
    """
    rate = dropout if attn_dropout is None else attn_dropout
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"attention dropout must be in [0, 1), got {rate}")
    return rate


class AttentionOp(ResidualOp):
    """A residual op around multi-head attention over ``x`` (self-attention) or, for ops that
    ``uses_memory``, from ``x`` to the other stream ``y``; subclasses define ``transform``."""

    def __init__(
        self,
        hidden: int,
        *,
        head_dim: int = 64,
        dropout: float = 0.1,
        norm: str = "post",
        layer_norm: str = "torch",
        attn_bias: bool = False,
        relation_dim: int = 64,
        ffn_mult: int = 4,
        attn_dropout: float | None = None,
    ) -> None:
        super().__init__(hidden, dropout=dropout, norm=norm, layer_norm=layer_norm)
        rate = _attn_dropout(dropout, attn_dropout)
        self.attn = MultiHeadAttention(hidden, head_dim, rate, attn_bias, self_attention=not self.uses_memory)


@OPS.register("self_att", aliases=("self_att_64",))
class SelfAttention(AttentionOp):
    def transform(self, x, x_mask, y, y_mask, rel_bias_embed):  # noqa: D102
        check_mask(x_mask, x.shape[0], x.shape[1], "x_mask")
        return self.attn(x, None, key_padding_bias(x_mask, x.dtype))


@OPS.register("guided_att", aliases=("guided_att_64",))
class GuidedAttention(AttentionOp):
    uses_memory = True

    def transform(self, x, x_mask, y, y_mask, rel_bias_embed):  # noqa: D102
        if y is None:
            raise ValueError("guided_att needs the other stream y (the encoder output) and its mask")
        check_mask(y_mask, y.shape[0], y.shape[1], "y_mask")
        return self.attn(x, y, key_padding_bias(y_mask, x.dtype))


@OPS.register("rel_self_att", aliases=("rel_self_att_64",))
class RelationSelfAttention(AttentionOp):
    uses_relation = True

    def __init__(self, hidden: int, *, relation_dim: int = 64, **settings: Any) -> None:
        super().__init__(hidden, relation_dim=relation_dim, **settings)
        # MMnas: Linear(REL_SIZE -> heads) with bias, then ReLU, clamp and log.
        self.relation_proj = nn.Linear(relation_dim, self.attn.heads)

    def relation_logits(self, rel_bias_embed: Tensor) -> Tensor:
        """``[B, N, N, relation_dim]`` -> per-head additive logits ``[B, heads, N, N]``.

        MMnas's ``log(clamp(ReLU(z), 1e-6))`` equals ``log(clamp(z, 1e-6))`` (values and
        gradients), so the ReLU pass is skipped.
        """
        weight = self.relation_proj(rel_bias_embed)
        return torch.log(torch.clamp(weight, min=RELATION_LOG_FLOOR)).permute(0, 3, 1, 2)

    def attend_with_relation(self, x: Tensor, x_mask: Tensor | None, rel_bias_embed: Tensor, offset: int = 0) -> Tensor:
        """Self-attention over ``x`` whose logits between its last ``N`` positions (from ``offset``
        on) get the relation term of ``rel_bias_embed`` ``[B, N, N, D]``, plus ``x_mask``'s padding."""
        check_mask(x_mask, x.shape[0], x.shape[1], "x_mask")
        bias = self.relation_logits(rel_bias_embed)
        if offset:
            bias = F.pad(bias, (offset, 0, offset, 0))  # zeros outside the last N x N pairs
        padding = key_padding_bias(x_mask, x.dtype)
        if padding is not None:
            bias = bias + padding
        return self.attn(x, None, bias)

    def transform(self, x, x_mask, y, y_mask, rel_bias_embed):  # noqa: D102
        b, n, _ = x.shape
        if rel_bias_embed is None:
            raise ValueError("rel_self_att needs rel_bias_embed, the embedded box geometry [B, N, N, relation_dim]")
        if tuple(rel_bias_embed.shape[:3]) != (b, n, n):
            raise ValueError(f"rel_bias_embed must be [{b}, {n}, {n}, D] for x of shape {tuple(x.shape)}, got {tuple(rel_bias_embed.shape)}")
        return self.attend_with_relation(x, x_mask, rel_bias_embed)


@OPS.register("feed_forward")
class FeedForward(ResidualOp):
    def __init__(
        self,
        hidden: int,
        *,
        head_dim: int = 64,
        dropout: float = 0.1,
        norm: str = "post",
        layer_norm: str = "torch",
        attn_bias: bool = False,
        relation_dim: int = 64,
        ffn_mult: int = 4,
        attn_dropout: float | None = None,
    ) -> None:
        super().__init__(hidden, dropout=dropout, norm=norm, layer_norm=layer_norm)
        self.inner = nn.Linear(hidden, ffn_mult * hidden)
        self.inner_dropout = Dropout(dropout)
        self.outer = nn.Linear(ffn_mult * hidden, hidden)

    def transform(self, x, x_mask, y, y_mask, rel_bias_embed):  # noqa: D102
        return self.outer(self.inner_dropout(F.relu(self.inner(x))))
