"""Skip work on padding: trim a batch to its longest real sequence, restore the shape afterwards.

Padding is trailing (right-padded text, regions padded at the end); positions after the last
real position of every sample in the batch are all padding and are dropped before the op
chains. Masks keep marking any padding that remains (shorter samples). Dropping trailing pads
leaves real outputs unchanged: keys at padding get a zero attention weight, and a
unidirectional LSTM never looks ahead.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def used_length(mask: Tensor | None, full_length: int) -> int:
    """Index after the last real (non-pad) position over the batch; at least 1 (one host sync)."""
    if mask is None:
        return full_length
    real_columns = (~mask).any(dim=0).nonzero()
    if real_columns.numel() == 0:
        return 1
    return int(real_columns[-1]) + 1


def pad_length(x: Tensor, length: int, dim: int = 1) -> Tensor:
    """Zero-pad ``x`` along ``dim`` (default the sequence dim of [B, L, ...]) up to ``length``."""
    missing = length - x.shape[dim]
    if missing <= 0:
        return x
    pad = [0, 0] * (x.dim() - dim - 1) + [0, missing]
    return F.pad(x, pad)
