"""Front ends and padding helpers."""
from __future__ import annotations

import pytest
import torch

from mmsearch.ops import RegionEmbedding, RelationEmbedding, TextStateProjection, TokenLSTMEmbedding, pad_length, used_length


def test_token_lstm_shapes_pretrained_init_and_trailing_padding():
    init = torch.randn(20, 8)
    emb = TokenLSTMEmbedding(20, 8, 16, embedding_init=init)
    torch.testing.assert_close(emb.embedding.weight.detach(), init)
    assert emb.embedding.weight.requires_grad  # MMnas fine-tunes GloVe
    ids = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 0, 0, 0]])
    out = emb(ids)
    assert out.shape == (2, 5, 16)
    # Dropping trailing padding leaves real positions unchanged (unidirectional LSTM).
    torch.testing.assert_close(emb(ids[:, :3])[0], out[0, :3])


def test_token_lstm_rejects_bad_init_and_ids():
    with pytest.raises(ValueError, match=r"\[20, 8\]"):
        TokenLSTMEmbedding(20, 8, 16, embedding_init=torch.randn(19, 8))
    with pytest.raises(ValueError, match="NaN"):
        TokenLSTMEmbedding(2, 2, 4, embedding_init=torch.tensor([[0.0, float("nan")], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="integer tensor"):
        TokenLSTMEmbedding(20, 8, 16)(torch.zeros(2, 3))


def test_text_state_projection_checks_dim():
    proj = TextStateProjection(12, 16)
    assert proj(torch.randn(2, 5, 12)).shape == (2, 5, 16)
    with pytest.raises(ValueError, match=r"\[B, L, 12\]"):
        proj(torch.randn(2, 5, 11))


def test_region_embedding_box_feature_adds_absolute_position():
    torch.manual_seed(0)
    plain, with_box = RegionEmbedding(6, 16), RegionEmbedding(6, 16, box_feature=True)
    with_box.proj.load_state_dict(plain.proj.state_dict())
    feats = torch.randn(1, 2, 6)
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [50.0, 0.0, 60.0, 10.0]]])
    flipped = boxes[:, [1, 0]]
    size = torch.tensor([[100.0, 100.0]])
    torch.testing.assert_close(plain(feats, boxes, size), plain(feats, flipped, size))
    assert not torch.allclose(with_box(feats, boxes, size), with_box(feats, flipped, size))
    with pytest.raises(ValueError, match="region_boxes and image_size"):
        with_box(feats)
    with pytest.raises(ValueError, match=r"\[B, L, 6\]"):
        plain(torch.randn(1, 2, 5))


def test_relation_embedding_shape_and_nonnegative():
    rel = RelationEmbedding(8)(torch.tensor([[[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 30.0, 20.0], [0.0, 0.0, 0.0, 0.0]]]))
    assert rel.shape == (1, 3, 3, 8)
    assert (rel >= 0).all() and torch.isfinite(rel).all()


def test_used_length_and_pad_length():
    mask = torch.tensor([[False, False, True, True, True], [False, True, False, True, True]])
    assert used_length(mask, 5) == 3  # sample 1 has a real token at index 2
    assert used_length(None, 5) == 5
    assert used_length(torch.ones(2, 4, dtype=torch.bool), 4) == 1  # nothing real: keep one column
    x = torch.randn(2, 3, 4)
    padded = pad_length(x, 5)
    assert padded.shape == (2, 5, 4)
    torch.testing.assert_close(padded[:, :3], x)
    assert (padded[:, 3:] == 0).all()
