"""Multi-head attention on ``torch.nn.functional.scaled_dot_product_attention``.

Math (per head of width d, as MMnas's ``MHAtt``): ``softmax(q k^T / sqrt(d) + B) v`` with
dropout on the attention map, where the additive bias ``B`` holds the key padding mask
(a large negative number at padded keys, MMnas's ``-1e9``) and, for relation
self-attention, ``log(clamp(relation weight, 1e-6))`` per head. Masks and relation terms are
combined into one float bias so that SDPA can run its fused kernel.

On CPU in training with attention dropout, SDPA has no fused kernel (it falls back to its
unfused math path); there we compute the same math explicitly with the cheaper CPU dropout of
:mod:`mmsearch.ops.dropout`.

The projections are fused: one ``Linear(H, 3H)`` for self-attention queries/keys/values and
one ``Linear(H, 2H)`` for the keys/values of guided attention; mathematically these are the
separate q/k/v projections of MMnas stacked row-wise.

Fully padded key rows (a sample without any real key) cannot produce NaN: the mask value is
finite, so such a row attends uniformly to padding, and its result is finite (and meaningless,
as in MMnas).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsearch.ops.dropout import dropout


def mask_value(dtype: torch.dtype) -> float:
    """The additive logit used for padded keys: MMnas's -1e9, or half the dtype's range if smaller."""
    return max(-1e9, torch.finfo(dtype).min / 2)


def key_padding_bias(key_mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """``[B, Lk]`` bool (True = pad) -> additive bias ``[B, 1, 1, Lk]`` (0 at real keys)."""
    if key_mask is None:
        return None
    bias = torch.zeros(key_mask.shape, dtype=dtype, device=key_mask.device)
    bias.masked_fill_(key_mask, mask_value(dtype))
    return bias[:, None, None, :]


def attend(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, dropout_p: float) -> Tensor:
    """``dropout(softmax(q k^T / sqrt(d) + bias)) v`` per head; ``q, k, v`` are [B, heads, L, d]."""
    if dropout_p > 0.0 and q.device.type == "cpu":
        scores = torch.matmul(q * (1.0 / math.sqrt(q.shape[-1])), k.transpose(-2, -1))
        if bias is not None:
            scores = scores + bias
        return torch.matmul(dropout(torch.softmax(scores, dim=-1), dropout_p, True), v)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with fused projections; ``heads = hidden / head_dim``.

    ``self_attention=True`` projects q, k, v from the query stream with one matmul; otherwise
    q comes from the query stream and k, v from ``memory`` (guided attention).
    """

    def __init__(self, hidden: int, head_dim: int, dropout: float, bias: bool, self_attention: bool) -> None:
        super().__init__()
        if head_dim <= 0 or hidden % head_dim:
            raise ValueError(f"hidden size {hidden} is not a multiple of the head width {head_dim}")
        self.hidden = hidden
        self.head_dim = head_dim
        self.heads = hidden // head_dim
        self.attn_dropout = dropout
        self.self_attention = self_attention
        if self_attention:
            self.qkv = nn.Linear(hidden, 3 * hidden, bias=bias)
        else:
            self.q = nn.Linear(hidden, hidden, bias=bias)
            self.kv = nn.Linear(hidden, 2 * hidden, bias=bias)
        self.merge = nn.Linear(hidden, hidden, bias=bias)

    def _split(self, t: Tensor, parts: int) -> tuple[Tensor, ...]:
        b, length, _ = t.shape
        # [B, L, parts*H] -> parts x [B, heads, L, d]
        return t.view(b, length, parts, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    def project(self, query: Tensor, memory: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Per-head queries, keys, values, each ``[B, heads, L, d]``."""
        if self.self_attention:
            q, k, v = self._split(self.qkv(query), 3)
        else:
            if memory is None:
                raise ValueError("guided attention needs the other stream (y) as keys/values")
            (q,) = self._split(self.q(query), 1)
            k, v = self._split(self.kv(memory), 2)
        return q, k, v

    def forward(self, query: Tensor, memory: Tensor | None, attn_bias: Tensor | None) -> Tensor:
        """``query`` [B, Lq, H], ``memory`` [B, Lk, H] or None, ``attn_bias`` broadcastable to [B, heads, Lq, Lk]."""
        q, k, v = self.project(query, memory)
        out = attend(q, k, v, attn_bias, self.attn_dropout if self.training else 0.0)
        b, _, length, _ = out.shape
        return self.merge(out.transpose(1, 2).reshape(b, length, self.hidden))
