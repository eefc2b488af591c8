"""A fixed network built from an :class:`~mmsearch.nas.arch_spec.ArchSpec` (MMnas's ``Net_Full``).

Same op classes, front end and head interface as the supernet: for the same weights it computes
exactly what the supernet computes on the spec's fixed path (:meth:`DerivedNet.load_from_supernet`
copies them over, e.g. to inspect or fine-tune a searched architecture with inherited weights;
MMnas retrains derived architectures from scratch).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from mmsearch.batch import MultimodalBatch
from mmsearch.nas.arch_spec import ArchSpec
from mmsearch.nas.frontend import FrontEnd
from mmsearch.nas.net_config import NetConfig, SupernetConfig
from mmsearch.ops import OPS, build_op, make_layer_norm

if TYPE_CHECKING:
    from mmsearch.nas.supernet import Supernet


def _uses_relation(name: str) -> bool:
    return bool(getattr(OPS.get(name), "uses_relation", False))


class DerivedNet(nn.Module):
    def __init__(self, spec: ArchSpec, config: NetConfig | SupernetConfig, embedding_init: Tensor | None = None) -> None:
        super().__init__()
        net = config.net if isinstance(config, SupernetConfig) else config
        if not spec.enc or not spec.dec:
            raise ValueError(f"a derived network needs at least one encoder and one decoder block, got depths {spec.depths}")
        self.spec = spec
        self.net_config = net
        settings = net.op_settings()
        self.uses_relation = any(_uses_relation(n) for n in spec.dec)
        self.front = FrontEnd(net, with_relation=self.uses_relation, embedding_init=embedding_init)
        self.encoder = nn.ModuleList(build_op(name, net.hidden, **settings) for name in spec.enc)
        self.decoder = nn.ModuleList(build_op(name, net.hidden, **settings) for name in spec.dec)
        pre_norm = net.norm == "pre"
        self.enc_final_norm = make_layer_norm(net.hidden, net.layer_norm) if pre_norm else nn.Identity()
        self.dec_final_norm = make_layer_norm(net.hidden, net.layer_norm) if pre_norm else nn.Identity()

    def forward(self, batch: MultimodalBatch, head: nn.Module) -> dict[str, Tensor]:
        streams = self.front(batch)
        x = streams.text
        for op in self.encoder:
            x = op(x, streams.text_mask)
        x = self.enc_final_norm(x)
        rel = self.front.relation(streams) if self.uses_relation else None
        y = streams.regions
        for op in self.decoder:
            y = op(y, streams.region_mask, x, streams.text_mask, rel)
        y = self.dec_final_norm(y)
        return head(*streams.head_inputs(x, y))

    @torch.no_grad()
    def load_from_supernet(self, supernet: "Supernet") -> None:
        """Copy the supernet's weights for this spec: front end, the chosen candidate of every
        block, final norms. Depths must match and the spec's ops must be in the supernet's pools."""
        if supernet.config.net != self.net_config:
            raise ValueError("the supernet was built with a different NetConfig")
        supernet.fixed_plan(self.spec)  # validates depths and pools
        self.front.load_shared(supernet.front)
        chains = ((self.encoder, self.spec.enc, supernet.encoder), (self.decoder, self.spec.dec, supernet.decoder))
        for ops, names, mixed_ops in chains:
            for op, name, mixed in zip(ops, names, mixed_ops):
                op.load_state_dict(mixed.ops[name].state_dict())
        self.enc_final_norm.load_state_dict(supernet.enc_final_norm.state_dict())
        self.dec_final_norm.load_state_dict(supernet.dec_final_norm.state_dict())
