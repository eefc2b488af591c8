"""A fixed network built from a :class:`~mmsearch.nas.stream_spec.FusionSpec` alone (any of the
six fusion patterns, or MMnas's encoder-decoder written as streams), and :func:`build_derived`,
which builds the fixed network of any spec (``ArchSpec`` -> :class:`DerivedNet`).

Same front end and head interface as :class:`~mmsearch.nas.derived.DerivedNet`: the streams are
embedded and trimmed (no work on shared trailing padding), run block by block, split back if
the spec ends joint, padded back to the batch's lengths and handed to the task head. The box-
geometry embedding is computed once per forward pass, only if a block reads it.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mmsearch.batch import MultimodalBatch
from mmsearch.nas.arch_spec import ArchSpec
from mmsearch.nas.derived import DerivedNet
from mmsearch.nas.frontend import FrontEnd
from mmsearch.nas.net_config import NetConfig, SupernetConfig
from mmsearch.nas.stream_spec import Block, FusionSpec
from mmsearch.ops import build_op, build_pair_op, concat_streams, masked_mean, split_streams


class StreamBlock(nn.Module):
    """One op on its stream(s), with the two-stream interface ``(text, regions) -> (text, regions)``.

    A ``joint`` block given separate streams concatenates, runs and splits (exactly what a
    concat, the block and a split compute); :meth:`run_joint` runs it on a joint stream.
    """

    def __init__(self, block: Block, hidden: int, settings: dict[str, object]) -> None:
        super().__init__()
        if block.stream is None:
            raise ValueError(f"{block.op} is bookkeeping, not a block with weights")
        self.stream, self.name = block.stream, block.op
        self.op = build_pair_op(block.op, hidden, **settings) if block.stream == "both" else build_op(block.op, hidden, **settings)
        self.uses_relation = bool(getattr(self.op, "uses_relation", False)) and block.stream in ("image", "joint")

    def run_joint(self, joint: Tensor, joint_mask: Tensor, rel: Tensor | None) -> Tensor:
        return self.op(joint, joint_mask, None, None, rel)

    def forward(self, text: Tensor, text_mask: Tensor, regions: Tensor, region_mask: Tensor,
                rel: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.stream == "text":
            return self.op(text, text_mask, regions, region_mask, None), regions
        if self.stream == "image":
            return text, self.op(regions, region_mask, text, text_mask, rel)
        if self.stream == "both":
            return self.op(text, text_mask, regions, region_mask, rel)
        joint, joint_mask = concat_streams(text, text_mask, regions, region_mask)
        return split_streams(self.run_joint(joint, joint_mask, rel), text.shape[1])


class StreamNet(nn.Module):
    def __init__(self, spec: FusionSpec, config: NetConfig | SupernetConfig, embedding_init: Tensor | None = None,
                 modality_norm: bool = True) -> None:
        """``modality_norm``: each stream's embeddings layer-normalised before the first block
        (:class:`~mmsearch.nas.frontend.FrontEnd`); off, an MMnas genotype written as streams
        computes exactly what :class:`~mmsearch.nas.derived.DerivedNet` computes."""
        super().__init__()
        net = config.net if isinstance(config, SupernetConfig) else config
        self.spec = spec
        self.net_config = net
        settings = net.op_settings()
        self.blocks = nn.ModuleList(StreamBlock(b, net.hidden, settings) for b in spec.op_blocks)
        self.uses_relation = any(b.uses_relation for b in self.blocks)
        self.front = FrontEnd(net, with_relation=self.uses_relation, embedding_init=embedding_init, modality_norm=modality_norm)
        pre_norm = net.norm == "pre"
        self.text_final_norm = nn.LayerNorm(net.hidden, eps=1e-6) if pre_norm else nn.Identity()
        self.region_final_norm = nn.LayerNorm(net.hidden, eps=1e-6) if pre_norm else nn.Identity()

    def forward(self, batch: MultimodalBatch, head: nn.Module) -> dict[str, Tensor]:
        streams = self.front(batch)
        rel = self.front.relation(streams) if self.uses_relation else None
        text, text_mask, regions, region_mask = streams.text, streams.text_mask, streams.regions, streams.region_mask
        joint = joint_mask = None
        pooled = False
        ops = iter(self.blocks)
        for block in self.spec.blocks:
            if block.op == "concat":
                joint, joint_mask = concat_streams(text, text_mask, regions, region_mask)
            elif block.op == "split":
                assert joint is not None
                text, regions = split_streams(joint, text.shape[1])
                joint = None
            elif block.op == "pool":
                text, regions = masked_mean(text, text_mask), masked_mean(regions, region_mask)
                text_mask = torch.zeros(text.shape[:2], dtype=torch.bool, device=text.device)
                region_mask = torch.zeros(regions.shape[:2], dtype=torch.bool, device=regions.device)
                pooled = True
            elif joint is not None:
                assert joint_mask is not None
                joint = next(ops).run_joint(joint, joint_mask, rel)
            else:
                text, regions = next(ops)(text, text_mask, regions, region_mask, rel)
        if joint is not None:
            text, regions = split_streams(joint, text.shape[1])
        text, regions = self.text_final_norm(text), self.region_final_norm(regions)
        if pooled:
            return head(text, text_mask, regions, region_mask)
        return head(*streams.head_inputs(text, regions))


def build_derived(spec: ArchSpec | FusionSpec, config: NetConfig | SupernetConfig, embedding_init: Tensor | None = None) -> nn.Module:
    """The fixed network of any architecture spec: MMnas genotypes -> DerivedNet, fusion specs -> StreamNet."""
    if isinstance(spec, FusionSpec):
        return StreamNet(spec, config, embedding_init)
    return DerivedNet(spec, config, embedding_init)
