"""The ``model`` section of the MMnas recipes: the network, as :class:`~mmsearch.nas.NetConfig` describes it.

:class:`ModelConfig` is derived training's ``model`` section as it stands; the search's section
(:class:`~mmsearch.recipes.search.config.SearchModelConfig`) extends it with the search space
and its own width default. Its fields are ``NetConfig``'s, same names and defaults
(``tests/test_train_config.py`` holds them equal), except:

* ``hidden`` defaults to MMnas's final training width, 512 (``NetConfig`` and the search: 256);
* the sizes the data decides (``text_input``, ``vocab_size``, ``word_dim``, ``text_state_dim``,
  ``region_dim``) default to ``None``: filled by the recipes' ``resolve_config`` from the data's
  ``TaskInfo`` (:func:`~mmsearch.recipes.resolve.data_sizes`); a value set here must agree with it.

Ranges are checked by pydantic as the YAML is read (errors name the key, ``model.hidden``), and
every ``NetConfig`` check runs at once on stand-in data sizes.
"""
from __future__ import annotations

import dataclasses
from typing import Literal, Optional

from pydantic import Field

from mmsearch.config import config_dataclass
from mmsearch.nas import NetConfig
from mmsearch.recipes.resolve import checked

_NET_FIELDS = tuple(f.name for f in dataclasses.fields(NetConfig))
_PROBE_SIZES = {"vocab_size": 2, "text_state_dim": 1, "region_dim": 1}  # stand-ins for validation only


@config_dataclass
class ModelConfig:
    """The network's settings (:class:`~mmsearch.nas.NetConfig`), flat."""

    hidden: int = Field(default=512, gt=0)  # width H (MMnas training: 512)
    head_dim: int = Field(default=64, gt=0)  # attention head width; heads = hidden / head_dim (MMnas: 8 x 64)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    attn_dropout: Optional[float] = Field(default=None, ge=0.0, lt=1.0)  # None = dropout
    norm: Literal["post", "pre"] = "post"  # MMnas: post-LN
    layer_norm: Literal["torch", "mmnas"] = "torch"  # nn.LayerNorm, or MMnas's own (unbiased std, eps on the std)
    attn_bias: bool = False
    ffn_mult: int = Field(default=4, gt=0)
    relation_dim: int = Field(default=64, gt=0)  # MMnas REL_SIZE
    box_feature: bool = False
    # Filled from the data (None = take the data's value; a set value must match it).
    text_input: Optional[Literal["tokens", "states"]] = None
    vocab_size: Optional[int] = Field(default=None, gt=0)
    word_dim: Optional[int] = Field(default=None, gt=0)
    text_state_dim: Optional[int] = Field(default=None, gt=0)
    region_dim: Optional[int] = Field(default=None, gt=0)

    def __post_init__(self) -> None:
        self.net_config(text_input=self.text_input or "tokens", probe=True)  # every NetConfig check, now

    def net_config(self, *, text_input: str, probe: bool = False, prefix: str = "") -> NetConfig:
        """The :class:`~mmsearch.nas.NetConfig` this section describes; ``probe`` puts stand-ins for
        the sizes the data decides (validation only), else they must be resolved."""
        net = {name: getattr(self, name) for name in _NET_FIELDS if getattr(self, name) is not None}
        net["text_input"] = text_input
        if probe:
            net = {**_PROBE_SIZES, **net}
        needed = ("region_dim", "vocab_size" if text_input == "tokens" else "text_state_dim")
        missing = [f"model.{k}" for k in needed if k not in net]
        if missing:
            raise ValueError(f"{', '.join(missing)} not resolved; call resolve_config(config, task_data.info) first")
        return checked(NetConfig, net, prefix)


__all__ = ["ModelConfig"]
