"""The architectures an oracle trains: MCAN and MMnas's prior, then distinct seeded random draws.

:func:`oracle_sample` is a pure function of (depths, pools, size, seed): the same call gives the
same list in the same order on every machine, so oracle files of different runs (and the
estimators scored against them) talk about the same architectures.
"""
from __future__ import annotations

import random
from typing import Any, Mapping, Sequence

from mmsearch.nas import DEFAULT_POOLS, PATTERNS, ArchSpec, FusionSpec, mcan_prior_spec, pattern_spec, random_spec

ANCHORS = ("mcan", "mmnas_prior")
SHORT = {"self_att": "SA", "guided_att": "GA", "rel_self_att": "RSA", "feed_forward": "FFN"}


def mcan_spec(enc_depth: int, dec_depth: int) -> ArchSpec:
    """MCAN at any depth: encoder SA, FFN alternating; decoder SA, GA, FFN repeated (MMnas's prior
    has RSA in place of the decoder SA: :func:`mmsearch.nas.mcan_prior_spec`)."""
    enc, dec = ("self_att", "feed_forward"), ("self_att", "guided_att", "feed_forward")
    return ArchSpec(enc=tuple(enc[i % 2] for i in range(enc_depth)), dec=tuple(dec[i % 3] for i in range(dec_depth)),
                    source=f"MCAN pattern at {enc_depth}+{dec_depth} blocks")


def anchor(name: str, enc_depth: int, dec_depth: int) -> ArchSpec:
    """An anchor architecture by name: ``mcan`` or ``mmnas_prior``."""
    if name == "mcan":
        return mcan_spec(enc_depth, dec_depth)
    if name == "mmnas_prior":
        return mcan_prior_spec(enc_depth, dec_depth)
    raise ValueError(f"unknown anchor {name!r}; anchors: {', '.join(ANCHORS)}")


def _fusion(spec: ArchSpec | FusionSpec | Mapping[str, Any]) -> FusionSpec | None:
    """The fusion spec, if ``spec`` is one (fusion specs have ``blocks``, MMnas genotypes ``enc``/``dec``)."""
    if isinstance(spec, FusionSpec):
        return spec
    return FusionSpec.from_dict(spec) if isinstance(spec, Mapping) and "blocks" in spec else None


def _ops(spec: ArchSpec | Mapping[str, Any], chain: str) -> tuple[str, ...]:
    blocks = getattr(spec, chain) if isinstance(spec, ArchSpec) else spec[chain]
    return tuple(b if isinstance(b, str) else b[0] for b in blocks)


def arch_key(spec: ArchSpec | FusionSpec | Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What makes two architectures the same: their encoder and decoder op sequences (a fusion
    spec: ``("fusion",)`` and its blocks' ``stream:op`` labels)."""
    fusion = _fusion(spec)
    if fusion is not None:
        return ("fusion",), tuple(b.label for b in fusion.blocks)
    return _ops(spec, "enc"), _ops(spec, "dec")


def arch_line(spec: ArchSpec | FusionSpec | Mapping[str, Any]) -> str:
    """``"SA FFN | RSA GA FFN"``; a fusion spec: ``"co_attention: both:co_att text:FFN ..."``."""
    fusion = _fusion(spec)
    if fusion is not None:
        return f"{fusion.pattern or 'fusion'}: " + " ".join(
            (f"{b.stream}:" if b.stream else "") + SHORT.get(b.op, b.op) for b in fusion.blocks)
    enc, dec = arch_key(spec)
    return " ".join(SHORT.get(o, o) for o in enc) + " | " + " ".join(SHORT.get(o, o) for o in dec)


def fusion_anchors() -> list[tuple[str, FusionSpec]]:
    """The survey's interaction patterns as (``fusion_<pattern>``, spec): the shipped fusion specs,
    at their own depth (an oracle holds them next to the MMnas-space sample)."""
    return [(f"fusion_{name}", pattern_spec(name)) for name in PATTERNS]


def oracle_sample(enc_depth: int, dec_depth: int, size: int, *, seed: int = 0,
                  pools: Mapping[str, Sequence[str]] | None = None) -> list[tuple[str, ArchSpec]]:
    """``size`` distinct architectures as (label, spec): ``mcan``, ``mmnas_prior``, then
    ``random<i>`` uniform draws from ``pools`` (default MMnas's) seeded from ``seed``."""
    pools = pools or DEFAULT_POOLS
    capacity = len(set(pools["enc"])) ** enc_depth * len(set(pools["dec"])) ** dec_depth
    if size < len(ANCHORS) or size > capacity:
        raise ValueError(f"sample size must be in [{len(ANCHORS)}, {capacity}] for this space, got {size}")
    out = [(name, anchor(name, enc_depth, dec_depth)) for name in ANCHORS]
    seen = {arch_key(s) for _, s in out}
    rng = random.Random(seed)
    while len(out) < size:
        draw = rng.randrange(2**31)
        spec = random_spec(enc_depth, dec_depth, pools, seed=draw)
        if arch_key(spec) not in seen:
            seen.add(arch_key(spec))
            out.append((f"random{len(out) - len(ANCHORS)}", spec))
    return out


__all__ = ["ANCHORS", "anchor", "arch_key", "arch_line", "fusion_anchors", "mcan_spec", "oracle_sample"]
