"""Builders shared by the ``test_nas_*`` files: tiny configs, batches, a test head, an objective.

(No tests here; the real task heads live in ``mmsearch.heads`` and are tested there.)
"""
from __future__ import annotations

import torch
from torch import nn

from mmsearch.batch import MultimodalBatch
from mmsearch.nas import NetConfig, SupernetConfig

HIDDEN = 64
VOCAB = 40
REGION_DIM = 24


def tiny_net(**changes) -> NetConfig:
    base = dict(hidden=HIDDEN, head_dim=32, vocab_size=VOCAB, word_dim=16, region_dim=REGION_DIM, dropout=0.0)
    base.update(changes)
    return NetConfig(**base)


def tiny_supernet_config(strategy: str = "proxyless", enc_depth: int = 2, dec_depth: int = 3, **changes) -> SupernetConfig:
    net = changes.pop("net", tiny_net())
    return SupernetConfig(net=net, enc_depth=enc_depth, dec_depth=dec_depth, strategy=strategy, **changes)


def make_batch(
    batch: int = 3,
    tokens: int = 6,
    regions: int = 7,
    seed: int = 0,
    text_lengths: list[int] | None = None,
    region_counts: list[int] | None = None,
    states_dim: int | None = None,
) -> MultimodalBatch:
    """Right-padded random batch with pixel boxes inside a 100 x 120 (h x w) image."""
    g = torch.Generator().manual_seed(seed)
    text_lengths = text_lengths or [max(1, tokens - i) for i in range(batch)]
    region_counts = region_counts or [max(1, regions - 2 * i) for i in range(batch)]
    text_mask = torch.arange(tokens)[None, :] >= torch.tensor(text_lengths)[:, None]
    region_mask = torch.arange(regions)[None, :] >= torch.tensor(region_counts)[:, None]
    ids = torch.randint(1, VOCAB, (batch, tokens), generator=g).masked_fill(text_mask, 0)
    xy = torch.rand(batch, regions, 2, generator=g) * torch.tensor([80.0, 60.0])
    wh = torch.rand(batch, regions, 2, generator=g) * 35 + 2
    boxes = torch.cat([xy, xy + wh], dim=-1).masked_fill(region_mask[..., None], 0.0)
    feats = torch.randn(batch, regions, REGION_DIM, generator=g).masked_fill(region_mask[..., None], 0.0)
    return MultimodalBatch(
        text_mask=text_mask,
        text_ids=ids,
        text_states=None if states_dim is None else torch.randn(batch, tokens, states_dim, generator=g),
        region_feats=feats,
        region_boxes=boxes,
        region_mask=region_mask,
        image_size=torch.tensor([[100.0, 120.0]] * batch),
        targets={"y": torch.randn(batch, generator=g), "per_region": torch.randn(batch, regions, generator=g)},
    )


class TinyHead(nn.Module):
    """Masked mean of both streams -> one score, plus a per-region score (shape checks)."""

    def __init__(self, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.score = nn.Linear(2 * hidden, 1)
        self.region_score = nn.Linear(hidden, 1)

    def forward(self, text, text_mask, regions, region_mask):
        def mean(x, mask):
            keep = (~mask).unsqueeze(-1).to(x.dtype)
            return (x * keep).sum(1) / keep.sum(1).clamp(min=1.0)

        fused = torch.cat([mean(text, text_mask), mean(regions, region_mask)], dim=-1)
        per_region = self.region_score(regions).squeeze(-1).masked_fill(region_mask, 0.0)
        return {"score": self.score(fused).squeeze(-1), "per_region": per_region}


def objective(outputs, batch):
    """Squared error on both outputs (real regions only); logs the score term."""
    score = ((outputs["score"] - batch.targets["y"]) ** 2).mean()
    real = (~batch.region_mask).to(outputs["per_region"].dtype)
    region = (((outputs["per_region"] - batch.targets["per_region"]) ** 2) * real).sum() / real.sum()
    return score + region, {"score_loss": float(score.detach())}
