"""Attentional reduction of a sequence to one vector (MMnas/MCAN "AttFlat") and the fused
reduction of both streams that the VQA and ITM heads classify."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mmsearch.ops import Dropout, MMnasLayerNorm


def padding_fill_value(dtype: torch.dtype) -> float:
    """A large negative logit for padded positions: softmax gives them weight exactly 0, yet it
    stays finite (no NaN from ``0 * -inf`` in KL terms, none from a fully padded row)."""
    return torch.finfo(dtype).min / 4


def head_layer_norm(size: int, kind: str = "torch") -> nn.Module:
    """The heads' LayerNorm: ``"torch"`` is ``nn.LayerNorm(size)`` (eps 1e-5, as the heads always had);
    ``"mmnas"`` is MMnas's own (unbiased std, eps 1e-6 added to the std), which MMnas's heads use too.
    The network passes its ``layer_norm`` setting, so ``model.layer_norm=mmnas`` covers the heads."""
    if kind == "torch":
        return nn.LayerNorm(size)
    if kind == "mmnas":
        return MMnasLayerNorm(size)
    raise ValueError(f"layer_norm must be 'torch' or 'mmnas', got {kind!r}")


def check_stream(name: str, x: Tensor, mask: Tensor, hidden_size: int) -> None:
    """Raise a clear error unless ``x`` is ``[B, L, hidden_size]`` and ``mask`` is bool ``[B, L]``."""
    if x.dim() != 3 or x.shape[-1] != hidden_size:
        raise ValueError(f"{name} must be [B, L, {hidden_size}] (hidden size {hidden_size}), got {tuple(x.shape)}")
    if mask.shape != x.shape[:2]:
        raise ValueError(f"{name}_mask must be [B, L] = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"{name}_mask must be bool (True = padding), got {mask.dtype}")


class AttFlat(nn.Module):
    """``[B, L, H]`` + padding mask ``[B, L]`` -> ``[B, out_size]``.

    An MLP (H -> mlp_size -> glimpses, ReLU and dropout) scores every position; a softmax over
    the unpadded positions turns each glimpse's scores into weights; the weighted sums of the
    glimpses are concatenated and projected to ``out_size``.
    """

    def __init__(self, hidden_size: int, out_size: int, mlp_size: int = 512, glimpses: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.glimpses = glimpses
        self.attention = nn.Sequential(
            nn.Linear(hidden_size, mlp_size),
            nn.ReLU(inplace=True),
            Dropout(dropout),  # the ops' cheap-mask dropout: F.dropout's Bernoulli draws were 6 % of a tiny step
            # No bias: the softmax over positions ignores a per-glimpse constant, so it would never learn.
            nn.Linear(mlp_size, glimpses, bias=False),
        )
        self.merge = nn.Linear(hidden_size * glimpses, out_size)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.reduce(x, mask)[0]

    def reduce(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``([B, out_size], attention logits [B, L, G])``; padded positions get a very negative logit."""
        logits = self.attention(x).masked_fill(mask.unsqueeze(-1), padding_fill_value(x.dtype))
        weights = torch.softmax(logits, dim=1)  # [B, L, G]
        pooled = torch.bmm(weights.transpose(1, 2), x)  # [B, G, H]
        return self.merge(pooled.flatten(1)), logits


class FusedReduction(nn.Module):
    """MMnas's fusion: AttFlat(text) + AttFlat(regions), then LayerNorm -> ``[B, out_size]``."""

    def __init__(self, hidden_size: int, out_size: int, mlp_size: int = 512, glimpses: int = 1, dropout: float = 0.1,
                 layer_norm: str = "torch") -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.text_flat = AttFlat(hidden_size, out_size, mlp_size, glimpses, dropout)
        self.region_flat = AttFlat(hidden_size, out_size, mlp_size, glimpses, dropout)
        self.norm = head_layer_norm(out_size, layer_norm)

    def pooled(self, text: Tensor, text_mask: Tensor, regions: Tensor, region_mask: Tensor) -> tuple[Tensor, Tensor]:
        """The two reduced streams before fusion: ``([B, out_size], [B, out_size])``."""
        text_vector, region_vector, _ = self.reduce(text, text_mask, regions, region_mask)
        return text_vector, region_vector

    def reduce(self, text: Tensor, text_mask: Tensor, regions: Tensor, region_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``pooled`` plus the region reduction's attention logits ``[B, N, G]`` (which regions it reads)."""
        check_stream("text", text, text_mask, self.hidden_size)
        check_stream("region", regions, region_mask, self.hidden_size)
        if text.shape[0] != regions.shape[0]:
            raise ValueError(f"text and regions disagree on the batch size: {text.shape[0]} vs {regions.shape[0]}")
        text_vector = self.text_flat(text, text_mask)  # text first: dropout draws in MMnas's order
        region_vector, region_logits = self.region_flat.reduce(regions, region_mask)
        return text_vector, region_vector, region_logits

    def forward(self, text: Tensor, text_mask: Tensor, regions: Tensor, region_mask: Tensor) -> Tensor:
        text_vector, region_vector = self.pooled(text, text_mask, regions, region_mask)
        return self.norm(text_vector + region_vector)


__all__ = ["AttFlat", "FusedReduction", "check_stream", "head_layer_norm", "padding_fill_value"]
