"""Configs of the MMnas networks: the shared network settings and the supernet's search settings.

:class:`NetConfig` describes everything a derived (fixed) network and the supernet share: widths,
dropout, norm placement, and the text / region front ends. :class:`SupernetConfig` adds the
search space (depths, candidate pools), the path-sampling seed and the strategy settings
(:class:`StrategySettings`, declared once: the search recipe's ``search`` section is one too).
A derived network is built from an :class:`~mmsearch.nas.arch_spec.ArchSpec` and the same ``NetConfig``.

Defaults follow MMnas's search setting (H=256, 64-wide heads, dropout 0.1, post-LN, no
attention bias, FFN 4H, relation embedding 64, 12 + 18 blocks, MCAN-like alpha prior).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import Field, field_validator

from mmsearch.config import config_dataclass
from mmsearch.nas.arch_spec import DEFAULT_POOLS, canonical_pool
from mmsearch.nas.stream_spec import DEFAULT_FUSION_POOL, fusion_pool


@config_dataclass
class NetConfig:
    hidden: int = 256  # model width H
    head_dim: int = 64  # attention head width; heads = hidden / head_dim (MMnas "_64")
    dropout: float = 0.1  # residual, attention-map and FFN-inner dropout
    attn_dropout: float | None = None  # attention-map dropout if different (None = dropout; 0 = fused CPU kernel)
    norm: Literal["post", "pre"] = "post"  # LayerNorm placement in every residual block
    layer_norm: Literal["torch", "mmnas"] = "torch"  # nn.LayerNorm, or MMnas's (unbiased std + eps): mmsearch.ops.base
    attn_bias: bool = False  # bias in the attention projections (MMnas: none)
    ffn_mult: int = 4  # FFN inner width = ffn_mult * hidden
    relation_dim: int = 64  # width of the shared box-geometry embedding (MMnas REL_SIZE)
    text_input: Literal["tokens", "states"] = "tokens"  # learned embedding + LSTM, or frozen states
    vocab_size: int | None = None  # required for text_input="tokens"
    word_dim: int = 300  # token embedding width (GloVe: 300)
    text_state_dim: int | None = None  # required for text_input="states"
    region_dim: int = 2048  # region feature width Dv
    box_feature: bool = False  # add Linear(5 -> H) of the normalised box to the region embedding

    def __post_init__(self) -> None:
        for name in ("hidden", "head_dim", "ffn_mult", "relation_dim", "word_dim", "region_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.hidden % self.head_dim:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of head_dim ({self.head_dim})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.attn_dropout is not None and not 0.0 <= self.attn_dropout < 1.0:
            raise ValueError(f"attn_dropout must be in [0, 1), got {self.attn_dropout}")
        if self.text_input == "tokens" and (self.vocab_size is None or self.vocab_size <= 0):
            raise ValueError("text_input='tokens' needs a positive vocab_size")
        if self.text_input == "states" and (self.text_state_dim is None or self.text_state_dim <= 0):
            raise ValueError("text_input='states' needs a positive text_state_dim")

    def op_settings(self) -> dict[str, object]:
        """Keyword arguments shared by every op constructor (see :mod:`mmsearch.ops.base`)."""
        return {
            "head_dim": self.head_dim,
            "dropout": self.dropout,
            "norm": self.norm,
            "layer_norm": self.layer_norm,
            "attn_bias": self.attn_bias,
            "relation_dim": self.relation_dim,
            "ffn_mult": self.ffn_mult,
            "attn_dropout": self.attn_dropout,
        }


@config_dataclass
class StrategySettings:
    """How a search picks paths and updates the architecture weights; a
    :class:`SupernetConfig` and the search recipe's ``search`` section both are these settings."""

    strategy: str = "proxyless"  # a name in mmsearch.nas.STRATEGIES: proxyless (MMnas) | darts | spos | fair
    warmup_sampling: Literal["alpha", "uniform"] = "alpha"  # proxyless weight-step paths during warm-up: prior or uniform
    spos_momentum: float = Field(default=0.05, gt=0.0, le=1.0)  # spos, fair: EMA rate of the per-op validation record

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, name: str) -> str:
        from mmsearch.nas.strategy_base import STRATEGIES  # filled when mmsearch.nas is imported

        if name not in STRATEGIES:
            raise ValueError(f"unknown strategy {name!r}; known strategies: {', '.join(STRATEGIES.names())}")
        return name

    def strategy_settings(self) -> dict[str, Any]:
        """These settings alone (of a subclass too), as keyword arguments."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(StrategySettings)}


@config_dataclass
class SupernetConfig(StrategySettings):
    """The supernet: the strategy settings (inherited, first), the network, the search space, the seed."""

    net: NetConfig = Field(kw_only=True)
    enc_depth: int = 12
    dec_depth: int = 18
    enc_pool: tuple[str, ...] = DEFAULT_POOLS["enc"]
    dec_pool: tuple[str, ...] = DEFAULT_POOLS["dec"]
    # "mmnas": MMnas's encoder-decoder space (enc_pool / dec_pool); "fusion": every block of both
    # stages (enc_depth + dec_depth blocks) picks from fusion_pool (stream:op candidates), i.e.
    # where the modalities interact and how (mmsearch.nas.fusion_supernet).
    search_space: Literal["mmnas", "fusion"] = "mmnas"
    fusion_pool: tuple[str, ...] = DEFAULT_FUSION_POOL
    alpha_init: Literal["uniform", "mcan_prior"] = "mcan_prior"  # MMnas overrides its normal init with the prior
    prior_strength: float = 1.0  # mcan_prior: logit +s for the prior op, -s for the others (MMnas: 1)
    seed: int = 0  # seed of the strategy's path-sampling generator

    def __post_init__(self) -> None:
        if self.enc_depth < 1 or self.dec_depth < 1:
            raise ValueError(f"depths must be at least 1, got enc_depth={self.enc_depth}, dec_depth={self.dec_depth}")
        canonical_pool("enc", self.enc_pool)
        canonical_pool("dec", self.dec_pool)
        fusion_pool(self.fusion_pool)
        if self.prior_strength < 0:
            raise ValueError(f"prior_strength must be >= 0, got {self.prior_strength}")

    @property
    def pools(self) -> dict[str, tuple[str, ...]]:
        """Canonical candidate pools ``{"enc": (...), "dec": (...)}``."""
        return {"enc": canonical_pool("enc", self.enc_pool), "dec": canonical_pool("dec", self.dec_pool)}
