"""Derivation: architecture weights -> an architecture spec, plus probabilities and entropy.

Pure functions of their inputs (no module state, no randomness): the same alpha state always
gives the same spec. Usable every epoch to log convergence (entropy falling) and collapse
(every block picking the same op).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from mmsearch.nas.arch_spec import CHAINS, ArchSpec, block_entropy

AlphaState = Mapping[str, Tensor]  # {"enc": [enc_depth, K_enc], "dec": [dec_depth, K_dec]} logits
Probabilities = Callable[[Tensor], Tensor]


def softmax_probabilities(alpha: Tensor) -> Tensor:
    return torch.softmax(alpha.detach().double(), dim=-1)


def _check_state(alpha_state: AlphaState) -> None:
    for chain in CHAINS:
        if chain not in alpha_state:
            raise ValueError(f"alpha state needs keys {CHAINS}, got {sorted(alpha_state)}")
        alpha = alpha_state[chain]
        if alpha.dim() != 2 or alpha.shape[1] == 0:
            raise ValueError(f"alpha[{chain!r}] must be [depth, candidates], got shape {tuple(alpha.shape)}")
        if not torch.isfinite(alpha).all():
            raise ValueError(f"alpha[{chain!r}] contains NaN or infinite values")


def block_probabilities(alpha_state: AlphaState, probabilities: Probabilities | None = None) -> dict[str, Tensor]:
    """Per chain, per block, per candidate probabilities (``softmax(alpha)`` unless given)."""
    _check_state(alpha_state)
    probabilities = probabilities or softmax_probabilities
    return {chain: probabilities(alpha_state[chain]).detach().cpu().double() for chain in CHAINS}


def arch_entropy(alpha_state: AlphaState, probabilities: Probabilities | None = None) -> dict[str, Any]:
    """Entropy of every block's candidate distribution: :func:`~mmsearch.nas.arch_spec.block_entropy`
    of the architecture weights' probabilities (per block in nats, ``enc_mean`` / ``dec_mean``,
    ``normalized_mean``: 1.0 = uniform, 0.0 = every block certain)."""
    probs = block_probabilities(alpha_state, probabilities)
    return block_entropy({chain: probs[chain].tolist() for chain in CHAINS})


def derive(
    alpha_state: AlphaState,
    pools: Mapping[str, Sequence[str]],
    *,
    probabilities: Probabilities | None = None,
    **metadata: Any,
) -> ArchSpec:
    """Argmax per block (ties go to the earlier pool op) -> :class:`ArchSpec` with the per-block
    probabilities and the pools; ``metadata`` fills ``seed``, ``config``, ``epoch``, ``task``, ``source``."""
    probs = block_probabilities(alpha_state, probabilities)
    ops = argmax_ops(alpha_state, pools)
    return ArchSpec(enc=ops["enc"], dec=ops["dec"], probs=probability_rows(probs),
                    op_pools={chain: tuple(pools[chain]) for chain in CHAINS}, **metadata)


def argmax_ops(alpha_state: AlphaState, pools: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """Per chain the pool name of every block's argmax candidate (ties go to the earlier pool op)."""
    ops = {}
    for chain in CHAINS:
        pool = tuple(pools[chain])
        if alpha_state[chain].shape[1] != len(pool):
            raise ValueError(f"alpha[{chain!r}] has {alpha_state[chain].shape[1]} candidates, the {chain} pool has {len(pool)}: {list(pool)}")
        ops[chain] = tuple(pool[i] for i in alpha_state[chain].detach().cpu().argmax(-1).tolist())
    return ops


def probability_rows(probs: Mapping[str, Tensor]) -> dict[str, tuple[tuple[float, ...], ...]]:
    """:func:`block_probabilities` as the plain tuples a spec file keeps."""
    return {chain: tuple(tuple(float(v) for v in row) for row in probs[chain]) for chain in CHAINS}
