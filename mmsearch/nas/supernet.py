"""The MMnas supernet: an encoder chain of mixed ops over text and a decoder chain over regions.

Layout (MCAN encoder-decoder): ``enc_depth`` blocks from ``enc_pool`` process the text; then
``dec_depth`` blocks from ``dec_pool`` process the image regions, guided attention reading the
encoder's final output. The architecture weights are one tensor per chain, ``enc_alpha``
``[enc_depth, |enc_pool|]`` and ``dec_alpha`` ``[dec_depth, |dec_pool|]`` (logits; MMnas's
``alpha_prob``), kept apart from the network weights (:meth:`weight_parameters` /
:meth:`arch_parameters`).

``forward(batch, head, plan=None)``: ``plan`` (a :class:`~mmsearch.nas.mixed_op.PathPlan`, made by
the strategy for a step) says which candidates run; without one the current argmax
architecture runs (what the search evaluates every epoch). With a fixed single path the
supernet computes exactly what :class:`~mmsearch.nas.derived.DerivedNet` computes for that
architecture with the same weights.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from mmsearch.batch import MultimodalBatch
from mmsearch.nas.arch_spec import CHAINS, ArchSpec
from mmsearch.nas.arch_weights import ArchWeights, prior_alphas
from mmsearch.nas.derive import derive
from mmsearch.nas.frontend import FrontEnd
from mmsearch.nas.mixed_op import ChainPlan, MixedOp, PathPlan
from mmsearch.nas.net_config import SupernetConfig
from mmsearch.ops import OPS, make_layer_norm


def relation_candidates(pool: tuple[str, ...]) -> tuple[int, ...]:
    """Indices of the pool's ops that read the box-geometry embedding."""
    return tuple(i for i, name in enumerate(pool) if getattr(OPS.get(name), "uses_relation", False))


def initial_alphas(config: SupernetConfig) -> tuple[Tensor, Tensor]:
    """``uniform``: all zeros. ``mcan_prior``: per block the prior op +s, the others -s, where the
    prior is SA, FFN alternating (encoder) and RSA, GA, FFN repeated (decoder), for any depth."""
    where = {chain: f"{chain} block {{block}}, but the {chain} pool" for chain in CHAINS}
    return prior_alphas(config, config.pools, lambda chain, op: op, where)


class Supernet(ArchWeights, nn.Module):
    def __init__(self, config: SupernetConfig, embedding_init: Tensor | None = None) -> None:
        super().__init__()
        if config.search_space != "mmnas":
            raise ValueError(f"Supernet is MMnas's search space; search_space={config.search_space!r} needs build_supernet")
        self.config = config
        self.pools = config.pools
        net = config.net
        settings = net.op_settings()
        self._relation_candidates = relation_candidates(self.pools["dec"])
        self.front = FrontEnd(net, with_relation=bool(self._relation_candidates), embedding_init=embedding_init)
        self.encoder = nn.ModuleList(MixedOp(self.pools["enc"], net.hidden, settings) for _ in range(config.enc_depth))
        self.decoder = nn.ModuleList(MixedOp(self.pools["dec"], net.hidden, settings) for _ in range(config.dec_depth))
        pre_norm = net.norm == "pre"
        self.enc_final_norm = make_layer_norm(net.hidden, net.layer_norm) if pre_norm else nn.Identity()
        self.dec_final_norm = make_layer_norm(net.hidden, net.layer_norm) if pre_norm else nn.Identity()
        self._init_arch_weights(config, initial_alphas(config))

    # parameter groups, alpha_state, argmax_plan: ArchWeights
    def fixed_plan(self, spec: ArchSpec) -> PathPlan:
        """The single path that runs ``spec`` (its depths must match; its ops must be in the pools)."""
        return self._single_path(spec.enc, spec.dec, "spec",
                                 lambda chain, missing: f"spec uses {missing} in the {chain} chain; the pool is {list(self.pools[chain])}")

    def derive(self, **metadata: Any) -> ArchSpec:
        """The current argmax architecture with probabilities, pools, seed and config (see :func:`derive`)."""
        return derive(self.alpha_state(), self.pools, **self._spec_metadata(), **metadata)

    # --- forward ---------------------------------------------------------------------------
    def forward(self, batch: MultimodalBatch, head: nn.Module, plan: PathPlan | None = None) -> dict[str, Tensor]:
        plan = plan if plan is not None else self.argmax_plan()
        streams = self.front(batch)
        x = streams.text
        for block, op in enumerate(self.encoder):
            x = op(plan.enc, block, x, streams.text_mask)
        x = self.enc_final_norm(x)
        rel = None
        if any(plan.dec.runs(i) for i in self._relation_candidates):
            rel = self.front.relation(streams)
        y = streams.regions
        for block, op in enumerate(self.decoder):
            y = op(plan.dec, block, y, streams.region_mask, x, streams.text_mask, rel)
        y = self.dec_final_norm(y)
        return head(*streams.head_inputs(x, y))


__all__ = ["ChainPlan", "PathPlan", "Supernet", "initial_alphas", "relation_candidates"]
