"""FuseMix adapters: a stack of pre-LN residual MLP blocks, a final LayerNorm, a projection.

An adapter maps one frozen encoder's latent (dimension ``in_dim``) into the shared space
(dimension ``out_dim``). The block is ``x + Linear(Dropout(GELU(Linear(LayerNorm(x)))))`` with an
inner width of ``width_factor * in_dim``; dropout sits on the hidden activation only. With the
defaults (4 blocks, x4, dropout 0.6) a 1536-d adapter to 512-d has 76,330,496 parameters, as
the FuseMix reference. The output is *not* L2-normalised here; :class:`FuseMixModel` does that.
"""
from __future__ import annotations

import torch
from torch import nn

from mmsearch.config import config_dataclass


@config_dataclass
class AdapterConfig:
    """Shape of one modality's adapter (the input dimension comes from the data)."""

    depth: int = 4  # number of residual MLP blocks (0 = LayerNorm + projection only)
    width_factor: float = 4.0  # hidden width of each block = round(width_factor * in_dim)
    dropout: float = 0.6  # on the hidden activation of every block

    def __post_init__(self) -> None:
        if self.depth < 0:
            raise ValueError(f"adapter depth must be >= 0, got {self.depth}")
        if self.width_factor <= 0:
            raise ValueError(f"adapter width_factor must be > 0, got {self.width_factor}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"adapter dropout must be in [0, 1), got {self.dropout}")


class ResidualMLPBlock(nn.Module):
    """Pre-LN residual MLP: ``x + fc2(dropout(gelu(fc1(norm(x)))))``."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()  # exact (erf) GELU, as the reference
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.drop(self.act(self.fc1(self.norm(x)))))


class Adapter(nn.Module):
    """Residual MLP blocks, final LayerNorm, Linear to the shared dimension."""

    def __init__(self, in_dim: int, out_dim: int, config: AdapterConfig | None = None) -> None:
        super().__init__()
        config = config or AdapterConfig()
        if in_dim <= 0 or out_dim <= 0:
            raise ValueError(f"adapter dimensions must be positive, got in_dim={in_dim}, out_dim={out_dim}")
        self.in_dim = in_dim
        self.out_dim = out_dim
        hidden = max(1, round(config.width_factor * in_dim))
        self.blocks = nn.Sequential(*(ResidualMLPBlock(in_dim, hidden, config.dropout) for _ in range(config.depth)))
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"adapter expects latents of shape [batch, {self.in_dim}], got {tuple(x.shape)}")
        return self.proj(self.norm(self.blocks(x)))
