"""Retrieval recall@K with several captions per image: hand-worked example, ties, chunking."""
from __future__ import annotations

import pytest
import torch

from mmsearch.metrics.retrieval import chance_recall, retrieval_recall, retrieval_recall_chunked

# 3 images, 5 captions; captions 0, 1 belong to image 0, caption 2 to image 1, captions 3, 4 to image 2.
TEXT_TO_IMAGE = torch.tensor([0, 0, 1, 2, 2])
SIM = torch.tensor([
    #  T0   T1   T2   T3   T4
    [0.9, 0.1, 0.8, 0.3, 0.2],  # I0
    [0.7, 0.6, 0.5, 0.4, 0.0],  # I1
    [0.2, 0.3, 0.1, 0.4, 0.9],  # I2
])


def test_hand_worked_example():
    # image -> text (rank = wrong captions scoring >= the best right caption):
    #   I0: best own caption T0 = 0.9; no other caption >= 0.9            -> rank 0
    #   I1: own caption T2 = 0.5; T0 = 0.7 and T1 = 0.6 are higher        -> rank 2
    #   I2: best own caption T4 = 0.9; nothing higher                      -> rank 0
    #   R@1 = 2/3, R@2 = 2/3, R@5 = 3/3
    # text -> image (column of SIM; rank = other images scoring >= its image):
    #   T0 -> I0: (0.9, 0.7, 0.2)  rank 0
    #   T1 -> I0: (0.1, 0.6, 0.3)  rank 2
    #   T2 -> I1: (0.8, 0.5, 0.1)  rank 1
    #   T3 -> I2: (0.3, 0.4, 0.4)  I1 ties with I2 -> the tie counts against: rank 1
    #   T4 -> I2: (0.2, 0.0, 0.9)  rank 0
    #   R@1 = 2/5, R@2 = 4/5, R@5 = 5/5
    got = retrieval_recall(SIM, TEXT_TO_IMAGE, ks=(1, 2, 5))
    expected = {
        "i2t_r1": 200 / 3, "i2t_r2": 200 / 3, "i2t_r5": 100.0, "i2t_mean": (200 / 3 + 200 / 3 + 100) / 3,
        "t2i_r1": 40.0, "t2i_r2": 80.0, "t2i_r5": 100.0, "t2i_mean": (40 + 80 + 100) / 3,
        "rsum": 200 / 3 + 200 / 3 + 100 + 40 + 80 + 100,
        "r_mean": (200 / 3 + 200 / 3 + 100 + 40 + 80 + 100) / 6,
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


def test_default_keys():
    got = retrieval_recall(SIM, TEXT_TO_IMAGE)
    assert set(got) == {f"{d}_r{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)} | {"i2t_mean", "t2i_mean", "r_mean", "rsum"}


def test_ties_count_against_the_query_and_ignore_row_order():
    # Constant scores carry no information: no credit at R@1, whatever the order of rows.
    sim = torch.zeros(3, 5)
    got = retrieval_recall(sim, TEXT_TO_IMAGE, ks=(1, 4))
    assert got["t2i_r1"] == 0.0 and got["i2t_r1"] == 0.0
    # i->t: I1 has 4 wrong captions tied -> rank 4 (miss at 4); I0 and I2 have 3 -> rank 3 (hit at 4).
    assert got["i2t_r4"] == pytest.approx(200 / 3)
    # Two captions of the same image tied at the top do not push each other down.
    sim = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert retrieval_recall(sim, torch.tensor([0, 0, 1]), ks=(1,))["i2t_r1"] == 100.0
    # Permuting texts (and their labels) does not change any number.
    perm = torch.tensor([3, 0, 4, 2, 1])
    assert retrieval_recall(SIM[:, perm], TEXT_TO_IMAGE[perm]) == retrieval_recall(SIM, TEXT_TO_IMAGE)


def test_chunked_scorer_equals_full_matrix():
    gen = torch.Generator().manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(37, 8, generator=gen), dim=1)
    text_to_image = torch.arange(37).repeat_interleave(3)[torch.randperm(111, generator=gen)]
    texts = torch.nn.functional.normalize(images[text_to_image] + 0.8 * torch.randn(111, 8, generator=gen), dim=1)
    full = retrieval_recall(images @ texts.T, text_to_image)
    for chunk in (1, 5, 1000):
        chunked = retrieval_recall_chunked(images, texts, text_to_image, chunk_size=chunk)
        assert chunked == pytest.approx(full)
    assert 0 < full["i2t_r1"] < 100 and 0 < full["t2i_r1"] < 100


def test_chance_recall():
    # 3 images, 5 texts: t->i chance at K is K/3; I1 (one caption) is hit at K=1 with prob 1/5,
    # I0 and I2 (two captions) with prob 2/5.
    chance = chance_recall(3, 5, TEXT_TO_IMAGE, ks=(1, 2))
    assert chance["t2i_r1"] == pytest.approx(100 / 3)
    assert chance["i2t_r1"] == pytest.approx(100 * (2 / 5 + 1 / 5 + 2 / 5) / 3)
    # K=2, two captions among 5: 1 - C(3,2)/C(5,2) = 1 - 3/10; one caption: 1 - C(4,2)/C(5,2) = 2/5.
    assert chance["i2t_r2"] == pytest.approx(100 * (0.7 + 0.4 + 0.7) / 3)
    # Random scores land near chance.
    gen = torch.Generator().manual_seed(1)
    t2i = torch.arange(200).repeat_interleave(2)
    runs = [retrieval_recall(torch.rand(200, 400, generator=gen), t2i, ks=(10,))["t2i_r10"] for _ in range(5)]
    assert abs(sum(runs) / 5 - chance_recall(200, 400, t2i, ks=(10,))["t2i_r10"]) < 2.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="no text"):
        retrieval_recall(torch.zeros(3, 2), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="outside"):
        retrieval_recall(torch.zeros(2, 2), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"shape \[5\]"):
        retrieval_recall(SIM, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_recall(torch.full((3, 5), float("nan")), TEXT_TO_IMAGE)
    with pytest.raises(ValueError, match="integer"):
        retrieval_recall(SIM, TEXT_TO_IMAGE.float())
    with pytest.raises(ValueError, match="ks"):
        retrieval_recall(SIM, TEXT_TO_IMAGE, ks=(0,))
    with pytest.raises(ValueError, match="same d"):
        retrieval_recall_chunked(torch.zeros(3, 4), torch.zeros(5, 3), TEXT_TO_IMAGE)
