"""Stream bookkeeping for two-stream and single-stream (joint) fusion: concatenate and split.

The joint stream is ``[text ; regions]`` along the sequence axis, ``[B, T + N, H]``, with the
concatenated padding masks (``True`` = padding). Each stream keeps its own (trimmed) length, so
padding of shorter samples sits inside the joint sequence: attention never reads it (its keys
are masked), and :func:`split_streams` hands every position back to its stream unchanged, so a
split after a concatenation is exact. Trailing all-padding columns of both streams were already
dropped by the network front end (:mod:`mmsearch.ops.padding`), so the joint sequence carries
no padding column that every sample shares.

Regions are always the *last* ``N`` positions of the joint stream: ops that add box geometry
to region-region pairs (:class:`mmsearch.ops.fusion.JointRelationSelfAttention`) rely on it.
"""
from __future__ import annotations

import torch
from torch import Tensor

from mmsearch.ops.base import check_mask


def concat_streams(text: Tensor, text_mask: Tensor, regions: Tensor, region_mask: Tensor) -> tuple[Tensor, Tensor]:
    """``[B, T, H]``, ``[B, T]``, ``[B, N, H]``, ``[B, N]`` -> joint ``[B, T + N, H]`` and mask ``[B, T + N]``."""
    if text.dim() != 3 or regions.dim() != 3 or text.shape[0] != regions.shape[0] or text.shape[2] != regions.shape[2]:
        raise ValueError(f"streams must be [B, L, H] with the same B and H, got {tuple(text.shape)} and {tuple(regions.shape)}")
    check_mask(text_mask, text.shape[0], text.shape[1], "text_mask")
    check_mask(region_mask, regions.shape[0], regions.shape[1], "region_mask")
    return torch.cat((text, regions), dim=1), torch.cat((text_mask, region_mask), dim=1)


def split_streams(joint: Tensor, text_length: int) -> tuple[Tensor, Tensor]:
    """Joint ``[B, T + N, H]`` -> text ``[B, T, H]`` and regions ``[B, N, H]`` (views, no copy)."""
    if not 0 < text_length < joint.shape[1]:
        raise ValueError(f"text length {text_length} does not split a joint stream of length {joint.shape[1]}")
    return joint[:, :text_length], joint[:, text_length:]


def cross_modal_mass(weights: Tensor, text_length: int, joint_mask: Tensor | None = None) -> Tensor:
    """Share of attention mass that crosses modalities, per sample: ``weights`` ``[B, heads, L, L]``
    (rows sum to 1) of a joint stream whose first ``text_length`` positions are text; real
    query rows only. A measure of how much fusion a joint block does (0 = none)."""
    b, _, length, _ = weights.shape
    is_text = torch.arange(length, device=weights.device) < text_length
    crosses = is_text[:, None] != is_text[None, :]  # [L, L] query-key pairs across modalities
    per_query = (weights * crosses).sum(-1).mean(1)  # [B, L]
    real = torch.ones(b, length, dtype=torch.bool, device=weights.device) if joint_mask is None else ~joint_mask
    return (per_query * real).sum(-1) / real.sum(-1).clamp(min=1)


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """``[B, L, H]`` -> ``[B, 1, H]``: the mean over real positions (zeros for a fully padded sample)."""
    if mask is None:
        return x.mean(1, keepdim=True)
    real = (~mask).to(x.dtype)[..., None]
    return (x * real).sum(1, keepdim=True) / real.sum(1, keepdim=True).clamp(min=1.0)
