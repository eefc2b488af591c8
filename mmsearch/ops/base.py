"""The operation registry and the residual block every candidate operation is built on.

Every op is a residual block around a transform ``f`` (attention or feed-forward):

* ``norm="post"`` (MMnas/MCAN default): ``out = LN(x + Dropout(f(x)))``
* ``norm="pre"``: ``out = x + Dropout(f(LN(x)))`` (the chain then needs a final LayerNorm,
  which the encoder/decoder chains in :mod:`mmsearch.nas` add).

LayerNorm (``layer_norm``): ``"torch"`` (default) is ``torch.nn.LayerNorm(H, eps=1e-6)``, i.e.
``(x - mean) / sqrt(var + eps)`` with the *biased* variance. ``"mmnas"`` is MMnas's own
(:class:`MMnasLayerNorm`): ``(x - mean) / (std + eps)`` with the *unbiased* std and eps added to
the std. For a hidden size H the two differ by a factor ``sqrt(H / (H - 1))``, about ``1/(2H)``
(0.2 % at H=256), which the learned gain absorbs: equivalent for training from scratch, but only
``"mmnas"`` reproduces an MMnas network's outputs from its weights. Both keep their parameters
as ``weight`` and ``bias``, so a state dict loads into either.

All ops share one constructor signature and one forward signature so that a mixed op can
call any candidate:

``Op(hidden, *, head_dim=64, dropout=0.1, norm="post", layer_norm="torch", attn_bias=False, relation_dim=64, ffn_mult=4, attn_dropout=None)``

(``attn_dropout=None`` means the attention map uses ``dropout`` too, as MMnas.)
``op(x, x_mask, y=None, y_mask=None, rel_bias_embed=None) -> Tensor [B, L, H]``

with masks ``[B, L]`` bool, ``True`` at padding (see :mod:`mmsearch.batch`).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from mmsearch.ops.dropout import Dropout
from mmsearch.registry import Registry

#: Canonical op name -> op class. Aliases accept MMnas's architecture-file names.
OPS: Registry[Callable[..., "ResidualOp"]] = Registry("op")

NORM_PLACEMENTS = ("post", "pre")
LAYER_NORMS = ("torch", "mmnas")
LAYER_NORM_EPS = 1e-6


class MMnasLayerNorm(nn.Module):
    """MMnas's LayerNorm: ``weight * (x - mean) / (std + eps) + bias``, the std unbiased (n - 1)."""

    def __init__(self, hidden: int, eps: float = LAYER_NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden))
        self.bias = nn.Parameter(torch.zeros(hidden))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)  # unbiased, as torch.std's default (and MMnas)
        return self.weight * (x - mean) / (std + self.eps) + self.bias


def make_layer_norm(hidden: int, kind: str = "torch") -> nn.Module:
    """The LayerNorm ``kind`` names (see the module docstring), eps 1e-6."""
    if kind not in LAYER_NORMS:
        raise ValueError(f"layer_norm must be one of {LAYER_NORMS}, got {kind!r}")
    return nn.LayerNorm(hidden, eps=LAYER_NORM_EPS) if kind == "torch" else MMnasLayerNorm(hidden)


class ResidualOp(nn.Module):
    """A residual block ``x -> x + f(x)`` with post- or pre-LayerNorm; subclasses define ``transform``.

    Class attributes tell a chain what an op needs from outside its own stream:
    ``uses_memory`` (the other modality's output, e.g. guided attention) and
    ``uses_relation`` (the shared box-geometry embedding, e.g. relation self-attention).
    """

    uses_memory: bool = False
    uses_relation: bool = False

    def __init__(self, hidden: int, *, dropout: float, norm: str, layer_norm: str = "torch") -> None:
        super().__init__()
        if hidden <= 0:
            raise ValueError(f"hidden size must be positive, got {hidden}")
        if norm not in NORM_PLACEMENTS:
            raise ValueError(f"norm placement must be one of {NORM_PLACEMENTS}, got {norm!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.hidden = hidden
        self.pre_norm = norm == "pre"
        self.norm = make_layer_norm(hidden, layer_norm)
        self.dropout = Dropout(dropout)

    def transform(
        self, x: Tensor, x_mask: Tensor | None, y: Tensor | None, y_mask: Tensor | None, rel_bias_embed: Tensor | None
    ) -> Tensor:
        raise NotImplementedError

    def forward(
        self,
        x: Tensor,
        x_mask: Tensor | None,
        y: Tensor | None = None,
        y_mask: Tensor | None = None,
        rel_bias_embed: Tensor | None = None,
    ) -> Tensor:
        if self.pre_norm:
            return x + self.dropout(self.transform(self.norm(x), x_mask, y, y_mask, rel_bias_embed))
        return self.norm(x + self.dropout(self.transform(x, x_mask, y, y_mask, rel_bias_embed)))


def build_op(name: str, hidden: int, **settings: object) -> ResidualOp:
    """Instantiate the op registered as ``name`` (canonical or alias) with the shared settings."""
    return OPS.get(name)(hidden, **settings)


def canonical_op_name(name: str) -> str:
    """``"self_att_64"`` -> ``"self_att"``; unknown names raise with the list of known ops."""
    return OPS.canonical(name)


def check_mask(mask: Tensor | None, batch: int, length: int, what: str) -> None:
    """Fail clearly when a padding mask does not match its stream."""
    if mask is None:
        return
    if mask.dtype != torch.bool or tuple(mask.shape) != (batch, length):
        raise ValueError(
            f"{what} must be a bool tensor of shape [{batch}, {length}] (True = padding), "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
