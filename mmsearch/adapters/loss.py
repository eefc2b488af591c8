"""Symmetric InfoNCE and its multiple-positive (MIL-NCE) variant, with chunked logits.

For L2-normalised embeddings ``a`` (x side) and ``b`` (y side) of ``n`` pairs, the logits are
``S = a @ b.T / temperature``. The loss is the mean of the x->y and y->x cross-entropies:

    loss = 1/2 * mean_i [lse_j S_ij - pos_i(S_i.)]  +  1/2 * mean_j [lse_i S_ij - pos_j(S_.j)]

With plain InfoNCE the positive of row i is column i (``pos = S_ii``). With ``group_ids`` (e.g.
the image id of each (image, caption) row) the positive set of row i is every column j with the
same group id, and ``pos_i = log sum_{j in P(i)} exp S_ij`` (MIL-NCE, Miech et al. 2020, as used by
VATT); with unique ids this is exactly InfoNCE.

``S`` is computed once and used for both directions (the reference computes ``b @ a.T`` again).
Memory: when ``chunk_size < n`` the logits are produced ``chunk_size`` rows at a time; the forward
keeps only per-row and per-column log-sum-exps (running ``logaddexp`` over chunks), and the backward
recomputes each row chunk, so peak memory is O(chunk_size * n) rather than O(n^2) (a 40,960 x
40,960 fp32 matrix is 6.7 GB). The cost is one extra ``n x n x d`` matmul (4 instead of 3). With
``chunk_size >= n`` the logits are kept for the backward (3 matmuls). The loss is computed in
fp32 even when the embeddings come from an autocast region.
"""
from __future__ import annotations

import torch
from torch import Tensor

# Logit buffers beyond this many bytes are chunked when chunk_size="auto" (None).
DEFAULT_LOGITS_BUDGET_BYTES = 1 << 30


def auto_chunk_size(n: int, budget_bytes: int = DEFAULT_LOGITS_BUDGET_BYTES) -> int:
    """Rows per logit chunk so that one fp32 ``[chunk, n]`` buffer fits ``budget_bytes``."""
    if n * n * 4 <= budget_bytes:
        return max(n, 1)
    return max(1, budget_bytes // (4 * n))


def contrastive_loss(
    x_emb: Tensor,
    y_emb: Tensor,
    temperature: Tensor,
    *,
    group_ids: Tensor | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Symmetric InfoNCE (or MIL-NCE when ``group_ids`` is given) of normalised embeddings.

    Args:
        x_emb, y_emb: ``[n, d]`` L2-normalised embeddings; row i of each forms pair i.
        temperature: 0-d tensor; logits are ``cos / temperature`` (gradient flows into it).
        group_ids: optional ``[n]`` integer tensor; rows with equal ids are positives of each other.
        chunk_size: rows of the logit matrix computed at once; ``None`` = automatic
            (:func:`auto_chunk_size`, full matrix up to 1 GiB).
    Returns:
        0-d loss in fp32 (fp64 if the embeddings are fp64).
    """
    if x_emb.ndim != 2 or y_emb.shape != x_emb.shape:
        raise ValueError(f"x and y embeddings must both be [n, d], got {tuple(x_emb.shape)} and {tuple(y_emb.shape)}")
    n = x_emb.shape[0]
    if n < 1:
        raise ValueError("contrastive loss needs at least one pair")
    if temperature.ndim != 0:
        raise ValueError(f"temperature must be a scalar tensor, got shape {tuple(temperature.shape)}")
    if group_ids is not None:
        if group_ids.shape != (n,) or group_ids.dtype.is_floating_point:
            raise ValueError(f"group_ids must be an integer tensor of shape [{n}], got {group_ids.dtype} {tuple(group_ids.shape)}")
        group_ids = group_ids.to(x_emb.device)
    chunk = auto_chunk_size(n) if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype = torch.promote_types(x_emb.dtype, torch.float32)  # fp16/bf16 -> fp32; fp64 stays fp64
    with torch.autocast(device_type=x_emb.device.type, enabled=False):
        return _SymmetricNCE.apply(x_emb.to(dtype), y_emb.to(dtype), temperature.to(dtype), group_ids, chunk)


def _row_chunks(n: int, chunk: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk, n)) for start in range(0, n, chunk)]


class _SymmetricNCE(torch.autograd.Function):
    """Forward and backward of the symmetric (MIL-)NCE loss over row chunks of the logits."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, temperature: Tensor, group_ids: Tensor | None, chunk: int) -> Tensor:
        n = a.shape[0]
        neg_inf = torch.tensor(float("-inf"), dtype=a.dtype, device=a.device)
        row_lse = torch.empty(n, dtype=a.dtype, device=a.device)
        col_lse = neg_inf.expand(n).clone()
        row_pos = torch.empty(n, dtype=a.dtype, device=a.device)
        col_pos = neg_inf.expand(n).clone()
        kept_logits = None
        for start, stop in _row_chunks(n, chunk):
            logits = (a[start:stop] @ b.T) / temperature  # [c, n]
            row_lse[start:stop] = torch.logsumexp(logits, dim=1)
            col_lse = torch.logaddexp(col_lse, torch.logsumexp(logits, dim=0))
            if group_ids is not None:
                positive = group_ids[start:stop, None] == group_ids[None, :]
                masked = logits.masked_fill(~positive, float("-inf"))
                row_pos[start:stop] = torch.logsumexp(masked, dim=1)
                col_pos = torch.logaddexp(col_pos, torch.logsumexp(masked, dim=0))
            if chunk >= n:
                kept_logits = logits
        if group_ids is None:
            row_pos = col_pos = (a * b).sum(dim=1) / temperature  # S_ii
        loss = 0.5 * ((row_lse - row_pos).mean() + (col_lse - col_pos).mean())
        ctx.chunk = chunk
        ctx.has_groups = group_ids is not None
        ctx.save_for_backward(a, b, temperature, row_lse, col_lse, row_pos, col_pos,
                              group_ids if group_ids is not None else neg_inf,
                              kept_logits if kept_logits is not None else neg_inf)
        ctx.kept = kept_logits is not None
        return loss

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        a, b, temperature, row_lse, col_lse, row_pos, col_pos, group_ids, kept_logits = ctx.saved_tensors
        n = a.shape[0]
        scale = grad_loss * (0.5 / n)
        need_a, need_b, need_t = ctx.needs_input_grad[:3]
        grad_a = torch.empty_like(a) if need_a else None
        grad_b = torch.zeros_like(b) if need_b else None
        grad_t = torch.zeros((), dtype=a.dtype, device=a.device) if need_t else None
        with torch.autocast(device_type=a.device.type, enabled=False):
            for start, stop in _row_chunks(n, ctx.chunk):
                logits = kept_logits if ctx.kept else (a[start:stop] @ b.T) / temperature
                # dLoss/dS = scale * (softmax_rows + softmax_cols - positive weights of both directions)
                grad_s = torch.sub(logits, row_lse[start:stop, None]).exp_()
                grad_s += torch.sub(logits, col_lse[None, :]).exp_()
                if ctx.has_groups:
                    positive = group_ids[start:stop, None] == group_ids[None, :]
                    pos_w = torch.sub(logits, row_pos[start:stop, None]).exp_()
                    pos_w += torch.sub(logits, col_pos[None, :]).exp_()
                    grad_s -= pos_w.masked_fill_(~positive, 0.0)
                else:
                    rows = torch.arange(stop - start, device=a.device)
                    grad_s[rows, rows + start] -= 2.0
                grad_s *= scale
                if need_a:
                    grad_a[start:stop] = (grad_s @ b) / temperature
                if need_b:
                    grad_b += (grad_s.T @ a[start:stop]) / temperature
                if need_t:
                    grad_t -= (grad_s * logits).sum() / temperature
        return grad_a, grad_b, grad_t, None, None
