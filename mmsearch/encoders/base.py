"""What every frozen encoder shares: the ``ENCODERS`` registry, its metadata, and freezing.

An encoder is an ``nn.Module`` wrapper around pretrained weights that never trains: it is put in
eval mode, its parameters have ``requires_grad=False``, and ``train()`` cannot switch it back.
Each one exposes

  * ``info`` -- an :class:`EncoderInfo` (name, modality, latent dimension, what the latent is);
  * ``embed(inputs) -> float32 [n, info.dim]`` -- the pooled latent, the same call for every
    encoder, which is what the precompute job and the generic tests use;
  * its own richer ``encode(...)`` (per-region features, per-token states, ...).

Factories are registered by name in ``ENCODERS``; ``ENCODERS.get(name)(**kwargs)`` builds one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from mmsearch.registry import Registry

Modality = Literal["image", "text"]


@dataclass(frozen=True)
class EncoderInfo:
    name: str  # registry name, also written into latent-store metadata
    modality: Modality
    dim: int  # width of the pooled latent returned by ``embed``
    latent: str  # one sentence: what the pooled latent is
    source: str  # where the weights come from (package name)


ENCODERS: Registry[Callable[..., nn.Module]] = Registry("encoder")


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no gradients for every parameter; returns ``module``."""
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    return module


class FrozenEncoder(nn.Module):
    """Base for the wrappers: keeps itself in eval mode and knows its device."""

    info: EncoderInfo

    def train(self, mode: bool = True) -> "FrozenEncoder":
        # Frozen by contract: dropout and batch-norm statistics must never switch to training.
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``None`` means CPU: encoders only move to an accelerator when asked to."""
    return torch.device("cpu") if device is None else torch.device(device)
