"""The FuseMix model: two adapters into one shared space plus a learned temperature.

Modality-agnostic: the two sides are called ``x`` and ``y``; which frozen encoder feeds which side
(image, text, audio, ...) is data, recorded by the recipe and the export, never assumed here.

Temperature parameterisation (as the reference): ``temperature`` is a learned scalar that
*divides* the cosine logits (``logits = cos / temperature``). It starts at 0.07 and is clamped in
place to ``[min, max]`` (default [0.001, 0.5]) by :meth:`FuseMixModel.clamp_temperature_` before
every forward pass of training; it never receives weight decay (see :func:`param_groups`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmsearch.adapters.mlp import Adapter, AdapterConfig
from mmsearch.config import config_dataclass


@config_dataclass
class FuseMixModelConfig:
    """Both adapters and the shared space. Latent dims are optional: ``None`` = taken from the data."""

    x: AdapterConfig = AdapterConfig()
    y: AdapterConfig = AdapterConfig()
    out_dim: int = 512  # dimension of the shared space (both adapters project to it)
    x_dim: int | None = None  # expected latent dimension of the x column (checked against the data)
    y_dim: int | None = None

    def __post_init__(self) -> None:
        if self.out_dim <= 0:
            raise ValueError(f"model.out_dim must be positive, got {self.out_dim}")
        for name, dim in (("x_dim", self.x_dim), ("y_dim", self.y_dim)):
            if dim is not None and dim <= 0:
                raise ValueError(f"model.{name} must be positive, got {dim}")


class FuseMixModel(nn.Module):
    """Adapters h_x, h_y and the temperature; ``forward`` returns L2-normalised embeddings."""

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        *,
        out_dim: int = 512,
        x_adapter: AdapterConfig | None = None,
        y_adapter: AdapterConfig | None = None,
        temperature_init: float = 0.07,
        temperature_bounds: tuple[float, float] = (0.001, 0.5),
        learn_temperature: bool = True,
    ) -> None:
        super().__init__()
        low, high = temperature_bounds
        if not 0.0 < low <= temperature_init <= high:
            raise ValueError(f"need 0 < min <= init <= max for the temperature, got {low}, {temperature_init}, {high}")
        self.x_adapter = Adapter(x_dim, out_dim, x_adapter)
        self.y_adapter = Adapter(y_dim, out_dim, y_adapter)
        self.temperature = nn.Parameter(torch.tensor(float(temperature_init)), requires_grad=learn_temperature)
        self.temperature_bounds = (float(low), float(high))

    @classmethod
    def from_config(
        cls,
        config: FuseMixModelConfig,
        x_dim: int,
        y_dim: int,
        *,
        temperature_init: float = 0.07,
        temperature_bounds: tuple[float, float] = (0.001, 0.5),
        learn_temperature: bool = True,
    ) -> "FuseMixModel":
        return cls(
            x_dim,
            y_dim,
            out_dim=config.out_dim,
            x_adapter=config.x,
            y_adapter=config.y,
            temperature_init=temperature_init,
            temperature_bounds=temperature_bounds,
            learn_temperature=learn_temperature,
        )

    @property
    def x_dim(self) -> int:
        return self.x_adapter.in_dim

    @property
    def y_dim(self) -> int:
        return self.y_adapter.in_dim

    @property
    def out_dim(self) -> int:
        return self.x_adapter.out_dim

    @torch.no_grad()
    def clamp_temperature_(self) -> None:
        """Clamp the temperature into its bounds, in place (call before each training forward)."""
        self.temperature.clamp_(*self.temperature_bounds)

    def embed_x(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.x_adapter(x), dim=-1)

    def embed_y(self, y: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.y_adapter(y), dim=-1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed_x(x), self.embed_y(y)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on weight matrices (ndim >= 2) only.

    LayerNorm weights, biases and the temperature (all ndim <= 1) get no decay, as the reference.
    Frozen parameters (``requires_grad=False``) are left out.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
