"""The fused baseline: a small MCAN (Yu et al., 2019), the standard encoder-decoder co-attention
network that MMnas searches around, with this project's real front end and task heads.

The architecture is the shipped ``mcan`` spec cut to ``widths.depth`` layers: encoder
``[SA, FFN] x depth`` over the text, decoder ``[SA, GA, FFN] x depth`` over the regions (GA:
regions attend to the encoded text), built as a :class:`mmsearch.nas.DerivedNet` at width
``widths.hidden``; the head is the task's real head (:func:`mmsearch.heads.build_head`:
attentional pooling of both streams, fused). Text: learned token embedding + LSTM (as the
text-only baseline); regions: feature projection plus the normalised box feature (as the
image-only baseline), so all three baselines see the same inputs of their modalities.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mmsearch.baselines.sizes import DataSizes, Widths
from mmsearch.batch import MultimodalBatch
from mmsearch.tasks import build_head
from mmsearch.nas import ArchSpec, DerivedNet, NetConfig, named_spec


def small_mcan_spec(depth: int) -> ArchSpec:
    """The first ``depth`` layers of the shipped MCAN spec (``2 * depth`` encoder blocks, ``3 * depth`` decoder blocks)."""
    full = named_spec("mcan")
    layers = len(full.enc) // 2
    if not 1 <= depth <= layers:
        raise ValueError(f"MCAN depth must be in 1..{layers}, got {depth}")
    return full.replace(enc=full.enc[: 2 * depth], dec=full.dec[: 3 * depth], source=f"{full.source} (first {depth} layers)")


class FusedMCANBaseline(nn.Module):
    """``forward(batch) -> head outputs`` of a ``widths.depth``-layer MCAN with the task's head."""

    modality = "text+image"

    def __init__(self, sizes: DataSizes, widths: Widths = Widths(), box_feature: bool = True) -> None:
        super().__init__()
        self.task = sizes.task
        self.spec = small_mcan_spec(widths.depth)
        net = NetConfig(
            hidden=widths.hidden,
            head_dim=widths.head_dim,
            dropout=widths.dropout,
            vocab_size=sizes.vocab_size,
            word_dim=sizes.word_dim,
            region_dim=sizes.region_dim,
            box_feature=box_feature,
        )
        init = None if sizes.embedding_init is None else torch.as_tensor(sizes.embedding_init, dtype=torch.float32)
        self.net = DerivedNet(self.spec, net, init)
        extra = {"num_answers": sizes.num_answers} if self.task == "vqa" else {}
        self.head = build_head(self.task, widths.hidden, flat_mlp_size=widths.flat_mlp, dropout=widths.dropout, **extra)

    def forward(self, batch: MultimodalBatch) -> dict[str, Tensor]:
        return self.net(batch, self.head)
