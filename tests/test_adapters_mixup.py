"""FuseMix latent mixup: one lambda shared by both sides, permutation vs halves, alpha = 0."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmsearch.adapters.mixup import mix_latent_pairs, sample_mixup_lambda


def _pairs(n=10, dx=6, dy=3):
    x = torch.randn(n, dx, generator=torch.Generator().manual_seed(0))
    y = x[:, :dy].clone()  # y is a copy of x's first dims: a shared mix keeps this exact relation
    return x, y


@pytest.mark.parametrize("mode", ["permutation", "halves"])
def test_one_lambda_shared_by_both_sides(mode):
    x, y = _pairs()
    mixed = mix_latent_pairs(x, y, alpha=1.0, mode=mode, rng=np.random.default_rng(1))
    assert 0.0 < mixed.lam < 1.0
    torch.testing.assert_close(mixed.y, mixed.x[:, :3])  # same lambda and same partners for x and y
    expected = mixed.lam * x[mixed.index] + (1 - mixed.lam) * x[mixed.partner]
    torch.testing.assert_close(mixed.x, expected)


def test_permutation_mixes_every_row_with_a_permuted_partner():
    x, y = _pairs(n=10)
    mixed = mix_latent_pairs(x, y, alpha=1.0, mode="permutation", rng=np.random.default_rng(2))
    assert mixed.x.shape == (10, 6)
    assert torch.equal(mixed.index, torch.arange(10))
    assert torch.equal(torch.sort(mixed.partner).values, torch.arange(10))
    assert not torch.equal(mixed.partner, torch.arange(10))


@pytest.mark.parametrize("n", [10, 11])
def test_halves_pairs_row_i_with_row_i_plus_half(n):
    x, y = _pairs(n=n)
    mixed = mix_latent_pairs(x, y, alpha=1.0, mode="halves", rng=np.random.default_rng(3))
    assert mixed.x.shape == (n // 2, 6)  # an odd last row is dropped
    assert torch.equal(mixed.index, torch.arange(5))
    assert torch.equal(mixed.partner, torch.arange(5, 10))
    torch.testing.assert_close(mixed.x, mixed.lam * x[:5] + (1 - mixed.lam) * x[5:10])


@pytest.mark.parametrize("mode", ["permutation", "halves"])
def test_alpha_zero_is_identity(mode):
    x, y = _pairs()
    rng = np.random.default_rng(4)
    before = rng.bit_generator.state
    mixed = mix_latent_pairs(x, y, alpha=0.0, mode=mode, rng=rng)
    assert mixed.lam == 1.0 and mixed.x is x and mixed.y is y
    assert rng.bit_generator.state == before  # no randomness consumed


def test_lambda_distribution_matches_beta():
    rng = np.random.default_rng(5)
    for alpha in (1.0, 0.2):
        lams = np.array([sample_mixup_lambda(alpha, rng) for _ in range(20_000)])
        assert lams.min() >= 0.0 and lams.max() <= 1.0
        assert abs(lams.mean() - 0.5) < 0.01  # Beta(a, a) is symmetric about 1/2
        assert abs(lams.var() - 1 / (4 * (2 * alpha + 1))) < 0.005  # Var = 1 / (4 (2a + 1))
    assert sample_mixup_lambda(0.0, rng) == 1.0


def test_mixing_is_reproducible_from_the_generator_seed():
    x, y = _pairs()
    a = mix_latent_pairs(x, y, alpha=1.0, rng=np.random.default_rng(7))
    b = mix_latent_pairs(x, y, alpha=1.0, rng=np.random.default_rng(7))
    c = mix_latent_pairs(x, y, alpha=1.0, rng=np.random.default_rng(8))
    assert a.lam == b.lam and torch.equal(a.x, b.x)
    assert a.lam != c.lam


def test_mixed_group_ids_pair_both_components():
    x, y = _pairs(n=8)
    groups = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    mixed = mix_latent_pairs(x, y, alpha=1.0, mode="halves", rng=np.random.default_rng(9), group_ids=groups)
    # halves: rows (0,4) (1,5) (2,6) (3,7) -> component groups (0,0) (0,0) (1,1) (1,1)
    g = mixed.group_ids
    assert g[0] == g[1] and g[2] == g[3] and g[0] != g[2]
    mixed = mix_latent_pairs(x, y, alpha=1.0, mode="permutation", rng=np.random.default_rng(9), group_ids=groups)
    for i in range(8):
        for j in range(8):
            same = bool(groups[i] == groups[j]) and bool(groups[mixed.partner[i]] == groups[mixed.partner[j]])
            assert bool(mixed.group_ids[i] == mixed.group_ids[j]) == same


def test_bad_arguments():
    x, y = _pairs()
    with pytest.raises(ValueError, match="unknown mixup mode"):
        mix_latent_pairs(x, y, alpha=1.0, mode="pairs", rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="alpha"):
        mix_latent_pairs(x, y, alpha=-1.0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="differ in size"):
        mix_latent_pairs(x, y[:4], alpha=1.0, rng=np.random.default_rng(0))
