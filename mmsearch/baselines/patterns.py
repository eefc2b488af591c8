"""Fusion patterns as baselines-style models, and parameter matching for fair comparisons.

:class:`SpecModel` is any architecture spec (a fusion pattern, MCAN, the MMnas prior) with the
project's front end (token embedding + LSTM; region feature + normalised box) and the task's
real head, ``forward(batch) -> head outputs`` -- trainable by
:func:`mmsearch.baselines.training.train_and_select` like every baseline.

:func:`match_width` picks, per model, the width H (heads of ``H / heads``) whose parameter count
is closest to a target, so that models of different shapes are compared at (nearly) the same
size. Counted: every parameter except the token-embedding table, which is the same for every model
that reads text and has nothing to do with fusion.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from mmsearch.baselines.sizes import DataSizes, Widths
from mmsearch.batch import MultimodalBatch
from mmsearch.tasks import build_head
from mmsearch.nas import ArchSpec, FusionSpec, NetConfig, build_derived


class SpecModel(nn.Module):
    """``forward(batch) -> head outputs`` of the fixed network of ``spec`` at ``widths``."""

    modality = "text+image"

    def __init__(self, spec: ArchSpec | FusionSpec, sizes: DataSizes, widths: Widths = Widths()) -> None:
        super().__init__()
        self.task = sizes.task
        self.spec = spec
        net = NetConfig(hidden=widths.hidden, head_dim=widths.head_dim, dropout=widths.dropout, vocab_size=sizes.vocab_size,
                        word_dim=sizes.word_dim, region_dim=sizes.region_dim, box_feature=True)
        init = None if sizes.embedding_init is None else torch.as_tensor(sizes.embedding_init, dtype=torch.float32)
        self.net = build_derived(spec, net, init)
        extra = {"num_answers": sizes.num_answers} if self.task == "vqa" else {}
        self.head = build_head(self.task, widths.hidden, flat_mlp_size=widths.flat_mlp, dropout=widths.dropout, **extra)

    def forward(self, batch: MultimodalBatch) -> dict[str, Tensor]:
        return self.net(batch, self.head)


def counted_parameters(model: nn.Module) -> int:
    """Parameters without token-embedding tables (see the module docstring)."""
    skip = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def match_width(build: Callable[[Widths], nn.Module], target: int, *, heads: int = 2, dropout: float = 0.1,
                widths: range = range(8, 513, 4)) -> tuple[Widths, int]:
    """The widths (H from ``widths``, ``heads`` heads, pooling MLP 2H) whose model's counted
    parameters are closest to ``target``; returns them and the count. Counts grow with H, so
    the scan stops once past the target."""
    best: tuple[int, Widths, int] | None = None
    for hidden in widths:
        if hidden % heads:
            continue
        w = Widths(hidden=hidden, flat_mlp=2 * hidden, head_dim=hidden // heads, dropout=dropout, depth=2)
        count = counted_parameters(build(w))
        if best is None or abs(count - target) < best[0]:
            best = (abs(count - target), w, count)
        if count > target:
            break
    assert best is not None
    return best[1], best[2]
