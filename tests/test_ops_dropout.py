"""CPU dropout with 16-bit-code masks, and attention's explicit path used with attention dropout."""
from __future__ import annotations

import math

import pytest
import torch

from mmsearch.ops import Dropout, attend, cpu_dropout
from mmsearch.ops.dropout import dropout


def test_drop_rate_scale_and_unbiasedness():
    torch.manual_seed(0)
    x = torch.ones(400_000)
    y = cpu_dropout(x, 0.1)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(0.1, abs=0.003)  # binomial std ~ 0.0005
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 65536 / (65536 - 6554)))
    assert y.mean().item() == pytest.approx(1.0, abs=0.005)


def test_mask_bits_are_uniform_across_positions():
    """Every 16-bit lane of the 64-bit draws drops at the same rate (no biased lane)."""
    torch.manual_seed(1)
    y = cpu_dropout(torch.ones(4 * 100_000), 0.5).view(-1, 4)
    rates = (y == 0).float().mean(0)
    assert torch.allclose(rates, torch.full((4,), 0.5), atol=0.01)


def test_gradient_is_the_mask_and_dtype_is_kept():
    torch.manual_seed(2)
    x = torch.randn(3, 5, 7, dtype=torch.float64, requires_grad=True)
    y = cpu_dropout(x, 0.3)
    assert y.dtype == torch.float64
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach() / x.detach())


def test_reproducible_under_manual_seed_and_identity_when_off():
    x = torch.randn(10, 10)
    torch.manual_seed(3)
    a = cpu_dropout(x, 0.2)
    torch.manual_seed(3)
    b = cpu_dropout(x, 0.2)
    assert torch.equal(a, b)
    module = Dropout(0.2).eval()
    assert module(x) is x
    assert Dropout(0.0).train()(x) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Dropout(1.0)


@pytest.mark.parametrize("length", [5, 64])  # small maps use F.dropout, large ones cpu_dropout
def test_explicit_attention_path_is_the_dropout_of_the_plain_math(length):
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(2, 3, length, 8, generator=g) for _ in range(3))
    bias = torch.randn(2, 3, length, length, generator=g)
    torch.manual_seed(5)
    got = attend(q, k, v, bias, 0.25)
    torch.manual_seed(5)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8) + bias, dim=-1)
    expected = dropout(weights, 0.25, True) @ v
    torch.testing.assert_close(got, expected)
    # Without dropout the fused SDPA kernel computes the same attention.
    torch.testing.assert_close(attend(q, k, v, bias, 0.0), weights @ v, atol=1e-5, rtol=1e-5)
