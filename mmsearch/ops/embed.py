"""Front ends: text tokens or frozen text states -> [B, T, H]; region features (+ boxes) -> [B, N, H];
box geometry -> the shared relation embedding for relation self-attention.

* :class:`TokenLSTMEmbedding` (MMnas): a learned ``Embedding(V, word_dim)`` (optionally
  initialised from a pretrained matrix such as GloVe, still trainable) followed by a 1-layer
  unidirectional ``LSTM(word_dim -> H)``; every time step is kept. Text is right-padded, so
  outputs at real positions do not depend on the padding after them.
* :class:`TextStateProjection`: ``Linear(Dt -> H)`` on per-token states of a frozen encoder.
* :class:`RegionEmbedding`: ``Linear(Dv -> H)`` on region features, plus optionally
  ``Linear(5 -> H)`` on the normalised box feature (added), which gives the decoder absolute
  positions (MMnas's relation geometry uses ``|dx|`` and cannot tell left from right).
* :class:`RelationEmbedding`: ``ReLU(Linear(4 -> relation_dim))`` of the pairwise geometry,
  computed once per forward pass and shared by all relation self-attention ops.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsearch.ops.geometry import box_relation_geometry, normalized_box_features

BOX_FEATURE_DIM = 5
GEOMETRY_DIM = 4


def _check_last_dim(x: Tensor, dim: int, what: str) -> None:
    if x.dim() != 3 or x.shape[-1] != dim:
        raise ValueError(f"{what} must be [B, L, {dim}], got shape {tuple(x.shape)}")


class TokenLSTMEmbedding(nn.Module):
    """Token ids ``[B, T]`` (0 = PAD, right-padded) -> ``[B, T, H]``."""

    def __init__(self, vocab_size: int, word_dim: int, hidden: int, embedding_init: Tensor | None = None) -> None:
        super().__init__()
        if vocab_size <= 0 or word_dim <= 0:
            raise ValueError(f"vocab_size and word_dim must be positive, got {vocab_size}, {word_dim}")
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, word_dim)
        if embedding_init is not None:
            if tuple(embedding_init.shape) != (vocab_size, word_dim):
                raise ValueError(
                    f"embedding_init must be [{vocab_size}, {word_dim}] (vocab, word dim), got {tuple(embedding_init.shape)}"
                )
            if not torch.isfinite(embedding_init).all():
                raise ValueError("embedding_init contains NaN or infinite values")
            with torch.no_grad():
                self.embedding.weight.copy_(embedding_init)
        self.lstm = nn.LSTM(word_dim, hidden, num_layers=1, batch_first=True)

    def forward(self, token_ids: Tensor) -> Tensor:
        if token_ids.dim() != 2 or token_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"text_ids must be an integer tensor [B, T], got {token_ids.dtype} {tuple(token_ids.shape)}")
        out, _ = self.lstm(self.embedding(token_ids))
        return out


class TextStateProjection(nn.Module):
    """Frozen per-token text states ``[B, T, Dt]`` -> ``[B, T, H]``."""

    def __init__(self, state_dim: int, hidden: int) -> None:
        super().__init__()
        self.state_dim = state_dim
        self.proj = nn.Linear(state_dim, hidden)

    def forward(self, states: Tensor) -> Tensor:
        _check_last_dim(states, self.state_dim, "text_states")
        return self.proj(states)


class RegionEmbedding(nn.Module):
    """Region features ``[B, N, Dv]`` (+ pixel boxes and image sizes if ``box_feature``) -> ``[B, N, H]``."""

    def __init__(self, feature_dim: int, hidden: int, box_feature: bool = False) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.proj = nn.Linear(feature_dim, hidden)
        self.box_proj = nn.Linear(BOX_FEATURE_DIM, hidden) if box_feature else None

    def forward(self, feats: Tensor, boxes: Tensor | None = None, image_size: Tensor | None = None) -> Tensor:
        _check_last_dim(feats, self.feature_dim, "region_feats")
        out = self.proj(feats)
        if self.box_proj is not None:
            if boxes is None or image_size is None:
                raise ValueError("the box feature is enabled: the batch needs region_boxes and image_size")
            out = out + self.box_proj(normalized_box_features(boxes, image_size).to(out.dtype))
        return out


class RelationEmbedding(nn.Module):
    """Pixel boxes ``[B, N, 4]`` -> ``ReLU(Linear(4 -> relation_dim))`` of their geometry, ``[B, N, N, relation_dim]``."""

    def __init__(self, relation_dim: int = 64) -> None:
        super().__init__()
        self.proj = nn.Linear(GEOMETRY_DIM, relation_dim)

    def forward(self, boxes: Tensor) -> Tensor:
        geometry = box_relation_geometry(boxes).to(self.proj.weight.dtype)
        # Same math as self.proj(geometry), written with a contiguous [4, relation_dim] right
        # factor: autograd then forms the weight gradient as geometry^T @ grad ([4, B*N*N] x
        # [B*N*N, D]), about 20x faster on CPU than the [D, B*N*N] x [B*N*N, 4] product that
        # nn.Linear's backward picks for this skinny shape.
        flat = torch.addmm(self.proj.bias, geometry.reshape(-1, GEOMETRY_DIM), self.proj.weight.t().contiguous())
        return F.relu(flat).view(*geometry.shape[:-1], -1)
