"""The fusion supernet (``search_space: fusion``): search *where* the modalities interact and *how*.

Two stages of blocks (``enc_depth`` then ``dec_depth`` blocks; the architecture weights
``enc_alpha`` ``[enc_depth, K]`` and ``dec_alpha`` ``[dec_depth, K]`` keep MMnas's chain names so
that every strategy -- proxyless, darts, spos -- runs on it unchanged). Every block of both stages
chooses among the same K candidates of ``fusion_pool``, each a ``stream:op`` that maps the pair
of streams (text, regions) to a new pair (:class:`~mmsearch.nas.stream_net.StreamBlock`):

* per-stream ops (``text:self_att``, ``image:rel_self_att``, ``*:feed_forward``): no interaction;
* cross-attention either way (``text:t2r_att``, ``image:guided_att``) or both at once (``both:co_att``);
* ``both:early_sum`` (the learned early-summation gate);
* joint attention over the concatenation (``joint:joint_rel_self_att``, ``joint:feed_forward``):
  concatenated, run and split inside the block.

*Where* follows from the block position: cross or joint candidates chosen in the first blocks
are early fusion, in the last blocks middle fusion, none at all is late fusion (the streams meet
only in the head). ``derive`` writes a :class:`~mmsearch.nas.stream_spec.FusionSpec`: the chosen
candidates per stage, with ``concat`` / ``split`` inserted around joint runs, plus the per-block
probabilities and the pool, which :class:`~mmsearch.nas.stream_net.StreamNet` builds alone.

``alpha_init: mcan_prior`` starts from MMnas's encoder-decoder in this space: the first stage
``text:self_att``, ``text:feed_forward`` alternating, the second ``image:rel_self_att``,
``image:guided_att``, ``image:feed_forward`` repeated.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from mmsearch.batch import MultimodalBatch
from mmsearch.nas.arch_weights import ArchWeights, prior_alphas
from mmsearch.nas.derive import argmax_ops, block_probabilities, probability_rows
from mmsearch.nas.frontend import FrontEnd
from mmsearch.nas.mixed_op import ChainPlan, PathPlan
from mmsearch.nas.net_config import SupernetConfig
from mmsearch.nas.stream_net import StreamBlock, StreamNet
from mmsearch.nas.stream_spec import STAGES, FusionSpec, compile_candidates, fusion_pool, parse_block

Pair = tuple[Tensor, Tensor]


def _combine(plan: ChainPlan, block: int, calls: Sequence[Callable[[], Pair]]) -> Pair:
    """A block's output under ``plan`` (see :mod:`mmsearch.nas.mixed_op`), for pair-valued candidates."""
    if plan.mode == "single":
        assert plan.index is not None
        return calls[plan.index[block]]()
    assert plan.weights is not None
    weights = plan.weights[block]
    active = plan.index[block] if plan.mode == "gated" and plan.index is not None else None
    text = regions = None
    for j, call in enumerate(calls):
        if active is not None and j != active:
            with torch.no_grad():
                t, r = call()
        else:
            t, r = call()
        text = weights[j] * t if text is None else text + weights[j] * t
        regions = weights[j] * r if regions is None else regions + weights[j] * r
    assert text is not None and regions is not None
    return text, regions


class MixedStreamOp(nn.Module):
    """One fusion-search block: its candidates (``stream:op``), run according to a plan row."""

    def __init__(self, pool: Sequence[str], hidden: int, settings: dict[str, object]) -> None:
        super().__init__()
        self.names = tuple(pool)
        self.ops = nn.ModuleDict({name: StreamBlock(parse_block(i, name), hidden, settings) for i, name in enumerate(pool)})

    def forward(self, plan: ChainPlan, block: int, text: Tensor, text_mask: Tensor, regions: Tensor,
                region_mask: Tensor, rel: Tensor | None) -> Pair:
        ops = list(self.ops.values())
        return _combine(plan, block, [lambda op=op: op(text, text_mask, regions, region_mask, rel) for op in ops])


def fusion_initial_alphas(config: SupernetConfig) -> tuple[Tensor, Tensor]:
    """``uniform``: zeros; ``mcan_prior``: MMnas's encoder-decoder (module docstring) at +s, the rest -s."""
    pool = fusion_pool(config.fusion_pool)
    streams = {"enc": "text", "dec": "image"}
    where = {chain: f"block {{block}} of the {stage} stage, but the fusion pool" for chain, stage in (("enc", "first"), ("dec", "second"))}
    return prior_alphas(config, {chain: pool for chain in STAGES}, lambda chain, op: f"{streams[chain]}:{op}", where)


class FusionSupernet(ArchWeights, nn.Module):
    def __init__(self, config: SupernetConfig, embedding_init: Tensor | None = None) -> None:
        super().__init__()
        if config.search_space != "fusion":
            raise ValueError(f"FusionSupernet needs search_space='fusion', got {config.search_space!r}")
        self.config = config
        net = config.net
        pool = fusion_pool(config.fusion_pool)
        self.pools = {stage: pool for stage in STAGES}
        settings = net.op_settings()
        self.encoder = nn.ModuleList(MixedStreamOp(pool, net.hidden, settings) for _ in range(config.enc_depth))
        self.decoder = nn.ModuleList(MixedStreamOp(pool, net.hidden, settings) for _ in range(config.dec_depth))
        self._relation_candidates = tuple(i for i, name in enumerate(pool) if self.encoder[0].ops[name].uses_relation)
        self.front = FrontEnd(net, with_relation=bool(self._relation_candidates), embedding_init=embedding_init,
                              modality_norm=True)  # the streams may meet at the first block
        pre_norm = net.norm == "pre"
        self.text_final_norm = nn.LayerNorm(net.hidden, eps=1e-6) if pre_norm else nn.Identity()
        self.region_final_norm = nn.LayerNorm(net.hidden, eps=1e-6) if pre_norm else nn.Identity()
        self._init_arch_weights(config, fusion_initial_alphas(config))

    # parameter groups, alpha_state, argmax_plan: ArchWeights
    def fixed_plan(self, spec: FusionSpec) -> PathPlan:
        """The single path of a searched spec (its ``stages`` must fit this supernet's depths and pool)."""
        if spec.stages is None:
            raise ValueError("only a spec written by the fusion search (with 'stages') maps onto the supernet")
        pool = self.pools["enc"]
        return self._single_path(spec.enc, spec.dec, "spec stage",
                                 lambda chain, _: f"spec uses {sorted(set(spec.enc + spec.dec) - set(pool))}; the fusion pool is {list(pool)}")

    def derive(self, **metadata: Any) -> FusionSpec:
        """The argmax architecture as a fusion spec, with per-block probabilities, pools, seed and config."""
        alphas = self.alpha_state()
        stages = argmax_ops(alphas, self.pools)
        return FusionSpec(
            blocks=compile_candidates(stages["enc"] + stages["dec"]),
            pattern="searched",
            stages=stages,
            probs=probability_rows(block_probabilities(alphas)),
            op_pools=self.pools,
            **self._spec_metadata(),
            **metadata,
        )

    def forward(self, batch: MultimodalBatch, head: nn.Module, plan: PathPlan | None = None) -> dict[str, Tensor]:
        plan = plan if plan is not None else self.argmax_plan()
        streams = self.front(batch)
        rel = None
        if any(plan.enc.runs(i) or plan.dec.runs(i) for i in self._relation_candidates):
            rel = self.front.relation(streams)
        text, regions = streams.text, streams.regions
        for chain, blocks in ((plan.enc, self.encoder), (plan.dec, self.decoder)):
            for block, op in enumerate(blocks):
                text, regions = op(chain, block, text, streams.text_mask, regions, streams.region_mask, rel)
        return head(*streams.head_inputs(self.text_final_norm(text), self.region_final_norm(regions)))


@torch.no_grad()
def load_stream_net_from_supernet(net: StreamNet, supernet: FusionSupernet) -> None:
    """Copy the supernet's weights for ``net.spec`` (a searched spec): front end, every chosen
    candidate, final norms -- the fixed network then computes what the supernet's path computes."""
    if supernet.config.net != net.net_config:
        raise ValueError("the supernet was built with a different NetConfig")
    supernet.fixed_plan(net.spec)  # validates depths and pool
    net.front.load_shared(supernet.front)
    mixed = list(supernet.encoder) + list(supernet.decoder)
    for block, name, op in zip(net.blocks, net.spec.enc + net.spec.dec, mixed):
        block.load_state_dict(op.ops[name].state_dict())
    net.text_final_norm.load_state_dict(supernet.text_final_norm.state_dict())
    net.region_final_norm.load_state_dict(supernet.region_final_norm.state_dict())


def build_supernet(config: SupernetConfig, embedding_init: Tensor | None = None) -> nn.Module:
    """The supernet of ``config.search_space``: MMnas's (:class:`~mmsearch.nas.supernet.Supernet`) or the fusion one."""
    if config.search_space == "fusion":
        return FusionSupernet(config, embedding_init)
    from mmsearch.nas.supernet import Supernet

    return Supernet(config, embedding_init)
