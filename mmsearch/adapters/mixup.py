"""FuseMix: mixup of (x, y) latent pairs in the frozen encoders' latent spaces.

One coefficient ``lam ~ Beta(alpha, alpha)`` is drawn per batch and shared by both sides, so a mixed
pair ``(lam * x_i + (1 - lam) * x_j, lam * y_i + (1 - lam) * y_j)`` stays a semantically matched
pair. Mixing happens on the latents, before the adapters. ``alpha = 0`` turns mixing off (the batch
is returned unchanged).

Partner choice (``mode``):

* ``"permutation"`` (default): partner j = perm(i) for a random permutation of the batch. Every row
  is mixed and the contrastive batch stays at B pairs, whatever alpha is.
* ``"halves"`` (the reference): row i of the first half is mixed with row i + B/2 of the second
  half, and only the B/2 mixed pairs are trained on (an odd last row is dropped).

Why permutation is the default: the contrastive batch, and so the number of negatives, equals the
configured batch size with and without mixup, which keeps an alpha = 0 vs alpha > 0 comparison
about mixing alone (with halves, turning mixup on also halves the batch); and every input pair takes
part in the loss as the main component of a mixed pair each step, so an epoch over a small data set
yields B mixed pairs per B inputs instead of B/2. The price is twice the adapter compute per *input*
pair (the adapters see B rows, not B/2); at equal adapter compute both modes train on the same
number of mixed pairs. Choose ``halves`` to reproduce the reference.

Multiple positives: with group ids (e.g. image ids), a mixed row's group is the *pair* of its
components' groups, so two mixed rows are positives only if both of their components match.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

MixupMode = Literal["permutation", "halves"]
MIXUP_MODES: tuple[str, ...] = ("permutation", "halves")


@dataclass(frozen=True)
class MixedPairs:
    """A batch after mixup. ``lam`` is 1.0 and ``partner`` is the identity when mixing is off."""

    x: Tensor  # [m, Dx]
    y: Tensor  # [m, Dy]
    group_ids: Tensor | None  # [m] int64, or None
    lam: float
    index: Tensor  # [m] rows of the input batch that are the main (weight lam) component
    partner: Tensor  # [m] rows of the input batch that are the other (weight 1 - lam) component


def sample_mixup_lambda(alpha: float, rng: np.random.Generator) -> float:
    """One ``lam ~ Beta(alpha, alpha)``; 1.0 (no mixing) when ``alpha == 0``."""
    if alpha < 0:
        raise ValueError(f"mixup alpha must be >= 0, got {alpha}")
    if alpha == 0:
        return 1.0
    return float(rng.beta(alpha, alpha))


def mix_latent_pairs(
    x: Tensor,
    y: Tensor,
    *,
    alpha: float,
    mode: MixupMode = "permutation",
    rng: np.random.Generator,
    group_ids: Tensor | None = None,
) -> MixedPairs:
    """Mix a batch of latent pairs with one shared lambda (see the module docstring).

    Randomness (lambda and the permutation) comes only from ``rng``, so a run is reproducible
    from its seed and resumable from ``rng.bit_generator.state``.
    """
    if mode not in MIXUP_MODES:
        raise ValueError(f"unknown mixup mode {mode!r}; known modes: {', '.join(MIXUP_MODES)}")
    if alpha < 0:
        raise ValueError(f"mixup alpha must be >= 0, got {alpha}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y batches differ in size: {x.shape[0]} vs {y.shape[0]}")
    batch = x.shape[0]
    identity = torch.arange(batch, device=x.device)
    if alpha == 0 or batch < 2:
        return MixedPairs(x, y, group_ids, 1.0, identity, identity)
    lam = sample_mixup_lambda(alpha, rng)
    if mode == "permutation":
        index = identity
        partner = torch.from_numpy(rng.permutation(batch)).to(x.device)
        x_main, y_main, x_other, y_other = x, y, x[partner], y[partner]
    else:
        half = batch // 2
        index, partner = identity[:half], identity[half : 2 * half]
        x_main, y_main, x_other, y_other = x[:half], y[:half], x[half : 2 * half], y[half : 2 * half]
    x_mixed = lam * x_main + (1.0 - lam) * x_other
    y_mixed = lam * y_main + (1.0 - lam) * y_other
    mixed_groups = None
    if group_ids is not None:
        on = group_ids.device
        pairs = torch.stack([group_ids[index.to(on)], group_ids[partner.to(on)]], dim=1)
        mixed_groups = torch.unique(pairs, dim=0, return_inverse=True)[1]
    return MixedPairs(x_mixed, y_mixed, mixed_groups, lam, index, partner)
