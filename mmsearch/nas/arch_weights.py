"""The architecture weights of a supernet: one unit for every search space.

Each supernet (MMnas's :class:`~mmsearch.nas.supernet.Supernet`, the fusion
:class:`~mmsearch.nas.fusion_supernet.FusionSupernet`) keeps one logit tensor per chain (or
stage; both keep MMnas's chain names): ``enc_alpha`` ``[enc_depth, K_enc]`` and ``dec_alpha``
``[dec_depth, K_dec]``, apart from the network weights, plus the search strategy (an ``nn.Module``
whose random state rides in the state dict). :class:`ArchWeights` is that bookkeeping, mixed into
both; :func:`prior_alphas` is their starting point (``alpha_init``).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from mmsearch.nas.arch_spec import mcan_prior_spec
from mmsearch.nas.mixed_op import PathPlan
from mmsearch.nas.net_config import SupernetConfig
from mmsearch.nas.strategy_base import STRATEGIES


def prior_alphas(
    config: SupernetConfig,
    pools: Mapping[str, Sequence[str]],
    label: Callable[[str, str], str],
    where: Mapping[str, str],
) -> tuple[Tensor, Tensor]:
    """``uniform``: zeros ``[depth, |pool|]`` per chain. ``mcan_prior``: per block MMnas's
    encoder-decoder op (:func:`~mmsearch.nas.arch_spec.mcan_prior_spec`, named in the pool as
    ``label(chain, op)``) at ``+prior_strength``, the others at ``-prior_strength``. ``where[chain]``
    says in an error where the block and its pool are (``{block}`` is filled in)."""
    enc = torch.zeros(config.enc_depth, len(pools["enc"]))
    dec = torch.zeros(config.dec_depth, len(pools["dec"]))
    if config.alpha_init == "uniform":
        return enc, dec
    prior = mcan_prior_spec(config.enc_depth, config.dec_depth)
    for alpha, chain, ops in ((enc, "enc", prior.enc), (dec, "dec", prior.dec)):
        pool = pools[chain]
        alpha.fill_(-config.prior_strength)
        for block, op in enumerate(ops):
            name = label(chain, op)
            if name not in pool:
                raise ValueError(f"alpha_init='mcan_prior' puts {name!r} in {where[chain].format(block=block)} is "
                                 f"{list(pool)}; add it or use alpha_init='uniform'")
            alpha[block, pool.index(name)] = config.prior_strength
    return enc, dec


class ArchWeights:
    """Mixed into a supernet ``nn.Module`` that has ``pools``, ``encoder`` and ``decoder`` (one
    mixed op per block): its architecture weights, the two parameter groups, and plans from them.

    :meth:`_init_arch_weights`, called once the network is built, registers ``enc_alpha`` and
    ``dec_alpha`` (the module's own parameters: first in its state dict and ``parameters()``) and
    then ``strategy`` (the last child: its RNG state closes the state dict), the layout every
    search checkpoint has.
    """

    config: SupernetConfig
    pools: dict[str, tuple[str, ...]]
    encoder: nn.ModuleList
    decoder: nn.ModuleList
    enc_alpha: nn.Parameter
    dec_alpha: nn.Parameter

    def _init_arch_weights(self, config: SupernetConfig, alphas: tuple[Tensor, Tensor]) -> None:
        self.enc_alpha = nn.Parameter(alphas[0])
        self.dec_alpha = nn.Parameter(alphas[1])
        self.strategy = STRATEGIES.get(config.strategy)(config)

    # --- parameter groups ------------------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture weights ``[enc_alpha, dec_alpha]``."""
        return [self.enc_alpha, self.dec_alpha]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every network weight (front end, all candidate ops, final norms); no alphas."""
        alpha_ids = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in alpha_ids]  # type: ignore[attr-defined]

    # --- plans -----------------------------------------------------------------------------
    def alpha_state(self) -> dict[str, Tensor]:
        """Detached CPU copies of the architecture weights, ``{"enc": [De, Ke], "dec": [Dd, Kd]}``."""
        return {"enc": self.enc_alpha.detach().cpu().clone(), "dec": self.dec_alpha.detach().cpu().clone()}

    def argmax_plan(self) -> PathPlan:
        return PathPlan.single(self.enc_alpha.detach().argmax(-1).tolist(), self.dec_alpha.detach().argmax(-1).tolist())

    def _spec_metadata(self) -> dict[str, Any]:
        """What every derived spec records of the search: the seed and the whole config."""
        from mmsearch.config import config_to_dict

        return {"seed": self.config.seed, "config": config_to_dict(self.config)}

    def _single_path(self, enc: Sequence[str], dec: Sequence[str], what: str, missing: Callable[[str, list[str]], str]) -> PathPlan:
        """The single path that runs the candidates ``enc`` / ``dec`` (named as in the pools): their
        depths must match (``what`` names them in the error), every name must be in its chain's
        pool (``missing(chain, names)`` is the error)."""
        depths = (len(self.encoder), len(self.decoder))
        if (len(enc), len(dec)) != depths:
            raise ValueError(f"{what} depths {(len(enc), len(dec))} do not match the supernet's {depths}")
        index = {}
        for chain, ops in (("enc", enc), ("dec", dec)):
            absent = sorted(set(ops) - set(self.pools[chain]))
            if absent:
                raise ValueError(missing(chain, absent))
            index[chain] = [self.pools[chain].index(name) for name in ops]
        return PathPlan.single(index["enc"], index["dec"])
