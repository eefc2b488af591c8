"""Symmetric InfoNCE / MIL-NCE: chunked == full (values and gradients), against naive formulas."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmsearch.adapters.loss import _SymmetricNCE, auto_chunk_size, contrastive_loss


def naive_infonce(a, b, temperature):
    """The reference formula: two cross-entropies over a @ b.T / t and its transpose."""
    logits = a @ b.T / temperature
    labels = torch.arange(len(a))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def naive_milnce(a, b, temperature, groups):
    """-log(sum over positives of exp / sum over all of exp), both directions, averaged."""
    logits = a @ b.T / temperature
    positive = groups[:, None] == groups[None, :]
    masked = logits.masked_fill(~positive, float("-inf"))
    rows = (torch.logsumexp(logits, 1) - torch.logsumexp(masked, 1)).mean()
    cols = (torch.logsumexp(logits, 0) - torch.logsumexp(masked, 0)).mean()
    return (rows + cols) / 2


def _inputs(n=9, d=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    raw_a = torch.randn(n, d, generator=gen, dtype=torch.float64, requires_grad=True)
    raw_b = torch.randn(n, d, generator=gen, dtype=torch.float64, requires_grad=True)
    temperature = torch.tensor(0.07, dtype=torch.float64, requires_grad=True)
    return raw_a, raw_b, temperature


def _value_and_grads(fn, raw_a, raw_b, temperature):
    loss = fn(F.normalize(raw_a, dim=1), F.normalize(raw_b, dim=1), temperature)
    grads = torch.autograd.grad(loss, (raw_a, raw_b, temperature))
    return loss.detach(), grads


@pytest.mark.parametrize("chunk", [1, 2, 4, 9, 50, None])
def test_chunked_infonce_equals_reference_formula(chunk):
    inputs = _inputs()
    want, want_grads = _value_and_grads(naive_infonce, *inputs)
    got, got_grads = _value_and_grads(lambda a, b, t: contrastive_loss(a, b, t, chunk_size=chunk), *inputs)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 3, 9])
def test_chunked_milnce_equals_formula_with_duplicates(chunk):
    inputs = _inputs()
    groups = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 4])
    want, want_grads = _value_and_grads(lambda a, b, t: naive_milnce(a, b, t, groups), *inputs)
    got, got_grads = _value_and_grads(lambda a, b, t: contrastive_loss(a, b, t, group_ids=groups, chunk_size=chunk), *inputs)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_milnce_with_unique_groups_is_infonce():
    inputs = _inputs(n=11)
    groups = torch.randperm(11) * 7  # unique, unordered ids
    plain, plain_grads = _value_and_grads(lambda a, b, t: contrastive_loss(a, b, t, chunk_size=4), *inputs)
    mil, mil_grads = _value_and_grads(lambda a, b, t: contrastive_loss(a, b, t, group_ids=groups, chunk_size=4), *inputs)
    torch.testing.assert_close(mil, plain, rtol=1e-12, atol=1e-12)
    for g, w in zip(mil_grads, plain_grads):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_milnce_with_duplicates_is_lower_than_infonce():
    # Two captions of one image: InfoNCE counts the other caption as a negative; MIL-NCE sums both
    # as positives, so its loss must be strictly lower, and exactly log-sum-exp over the pair.
    a = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64), dim=1)
    b = F.normalize(torch.tensor([[1.0, 0.1], [1.0, -0.1], [0.0, 1.0]], dtype=torch.float64), dim=1)
    t = torch.tensor(0.5, dtype=torch.float64)
    groups = torch.tensor([5, 5, 9])
    plain = contrastive_loss(a, b, t)
    mil = contrastive_loss(a, b, t, group_ids=groups)
    assert mil < plain
    torch.testing.assert_close(mil, naive_milnce(a, b, t, groups))


@pytest.mark.parametrize("groups", [None, torch.tensor([0, 1, 1, 2, 3, 3, 3])])
@pytest.mark.parametrize("chunk", [2, 7])
def test_gradcheck(groups, chunk):
    gen = torch.Generator().manual_seed(3)
    a = F.normalize(torch.randn(7, 4, generator=gen, dtype=torch.float64), dim=1).requires_grad_()
    b = F.normalize(torch.randn(7, 4, generator=gen, dtype=torch.float64), dim=1).requires_grad_()
    t = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, t: _SymmetricNCE.apply(a, b, t, groups, chunk), (a, b, t))


def test_fp32_chunked_matches_full_on_a_larger_batch():
    gen = torch.Generator().manual_seed(1)
    a = F.normalize(torch.randn(300, 32, generator=gen), dim=1).requires_grad_()
    b = F.normalize(torch.randn(300, 32, generator=gen), dim=1).requires_grad_()
    t = torch.tensor(0.05, requires_grad=True)
    full = contrastive_loss(a, b, t, chunk_size=300)
    full_grads = torch.autograd.grad(full, (a, b, t))
    chunked = contrastive_loss(a, b, t, chunk_size=37)
    chunked_grads = torch.autograd.grad(chunked, (a, b, t))
    torch.testing.assert_close(chunked, full)
    for g, w in zip(chunked_grads, full_grads):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


def test_low_precision_embeddings_give_an_fp32_loss():
    a = F.normalize(torch.randn(8, 4), dim=1).bfloat16().requires_grad_()
    b = F.normalize(torch.randn(8, 4), dim=1).bfloat16()
    loss = contrastive_loss(a, b, torch.tensor(0.07))
    assert loss.dtype == torch.float32
    loss.backward()
    assert a.grad.dtype == torch.bfloat16


def test_perfect_alignment_at_low_temperature_has_near_zero_loss():
    a = torch.eye(6, dtype=torch.float64)
    assert contrastive_loss(a, a, torch.tensor(0.01, dtype=torch.float64)).item() < 1e-6
    # Uniform logits: the loss is log(n) in both directions.
    same = F.normalize(torch.ones(6, 3, dtype=torch.float64), dim=1)
    torch.testing.assert_close(contrastive_loss(same, same, torch.tensor(0.07, dtype=torch.float64)),
                               torch.log(torch.tensor(6.0, dtype=torch.float64)))


def test_auto_chunk_size():
    assert auto_chunk_size(1000) == 1000  # 4 MB of logits: no chunking
    n = 40_960  # 6.7 GB of fp32 logits: chunked to 1 GiB rows
    chunk = auto_chunk_size(n)
    assert chunk < n and chunk * n * 4 <= 1 << 30


def test_bad_inputs():
    a = torch.randn(4, 3)
    with pytest.raises(ValueError, match="both be"):
        contrastive_loss(a, torch.randn(5, 3), torch.tensor(0.07))
    with pytest.raises(ValueError, match="group_ids"):
        contrastive_loss(a, a, torch.tensor(0.07), group_ids=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="group_ids"):
        contrastive_loss(a, a, torch.tensor(0.07), group_ids=torch.zeros(4))
    with pytest.raises(ValueError, match="chunk_size"):
        contrastive_loss(a, a, torch.tensor(0.07), chunk_size=0)
    with pytest.raises(ValueError, match="scalar"):
        contrastive_loss(a, a, torch.tensor([0.07]))


@pytest.mark.parametrize("groups", [False, True])
def test_chunked_loss_keeps_no_quadratic_tensor_for_backward(groups):
    n, d = 256, 8
    a = F.normalize(torch.randn(n, d), dim=1).requires_grad_()
    b = F.normalize(torch.randn(n, d), dim=1).requires_grad_()
    t = torch.tensor(0.07, requires_grad=True)
    ids = torch.arange(n) // 2 if groups else None
    for chunk, quadratic_saved in ((32, False), (n, True)):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda x: saved.append(x.numel()) or x, lambda x: x):
            loss = contrastive_loss(a, b, t, group_ids=ids, chunk_size=chunk)
        assert (max(saved) >= n * n) == quadratic_saved  # chunked: only [n, d] embeddings and [n] statistics
        loss.backward()
