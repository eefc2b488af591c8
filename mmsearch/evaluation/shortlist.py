"""The shortlist stage as pure functions: which architectures are retrained, and which one wins.

After a job's searches, the top ``k`` *distinct* architectures by the search's estimate (each
trial's validation metric of its best architecture with the supernet's shared weights) and the
anchors (MCAN and MMnas's prior at the search's depth) are retrained standalone under ASHA
(``mmsearch.orchestration.jobs.shortlist``); :func:`pick_winner` takes the best *validation*
metric among the trials that ran the full budget. The test split plays no part in it.

:func:`search_agreement` and :func:`block_entropy` describe how sure and how consistent the
searches were: the fraction of blocks two searches' architectures agree on (mean over pairs,
against chance for the pools) and each block's entropy of the final op probabilities.
"""
from __future__ import annotations

import itertools
import math
import random
import statistics
from typing import Any, Literal, Mapping, Sequence

from pydantic import Field

from mmsearch.config import config_dataclass
from mmsearch.evaluation.oracle import kendall_tau
from mmsearch.evaluation.sample import anchor, arch_key, arch_line
from mmsearch.nas import ArchSpec, block_entropy


@config_dataclass
class ShortlistSettings:
    """The job config's ``shortlist:`` section."""

    enabled: bool = False
    k: int = Field(default=3, ge=1)  # distinct searched architectures retrained (fewer when the searches found fewer)
    budget: int = Field(default=8, ge=1)  # epochs of each standalone training (ASHA's max_t)
    anchors: tuple[Literal["mcan", "mmnas_prior"], ...] = ("mcan", "mmnas_prior")
    grace_period: int = Field(default=2, ge=1)  # ASHA: epochs before the first rung
    reduction_factor: int = Field(default=2, ge=2)
    cpus_per_trial: float = Field(default=1.0, gt=0)
    train_config: str | None = None  # the standalone training's config; default configs/train/<task>.yaml
    # Architectures drawn from the search space next to the searched ones; ASHA's first rung
    # (grace_period epochs of standalone training) ranks them all. That short training ranks
    # architectures at Kendall tau 0.42 (VG) and 0.44 (ITM) at 2 epochs, against -0.04 and 0.24 for
    # MMnas's one-shot estimate (bench/README.md, "Estimators on VG and ITM").
    pool: int = Field(default=0, ge=0)
    # "search": each block's op drawn from a search's final op probabilities (the searches by
    # estimate, in turn); "uniform": from the pools, uniformly (random search under ASHA).
    pool_from: Literal["search", "uniform"] = "search"
    pool_seed: int = Field(default=0, ge=0)

    def __post_init__(self) -> None:
        if self.grace_period > self.budget:
            raise ValueError(f"shortlist.grace_period ({self.grace_period}) must be <= shortlist.budget ({self.budget})")
        if len(set(self.anchors)) != len(self.anchors):
            raise ValueError(f"shortlist.anchors has duplicates: {list(self.anchors)}")


def _clean_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture (ops, pools, task, and the search's per-block op probabilities when it has
    them) in the spec file's form: what a standalone training needs, and what the report draws."""
    keys = ("enc", "dec", "probs", "op_pools", "task")
    canonical = ArchSpec.from_dict({k: spec[k] for k in keys if spec.get(k) is not None}).to_dict()
    return {k: canonical[k] for k in keys if canonical.get(k) is not None}


def shortlist_candidates(searched: Sequence[Mapping[str, Any]], k: int, anchors: Sequence[str],
                         depths: tuple[int, int], *, pool: int = 0, pool_from: str = "search",
                         pool_seed: int = 0) -> list[dict[str, Any]]:
    """The architectures to retrain, in order: the top ``k`` distinct ``searched`` ones by
    ``estimate`` (ties: ``trial_id``), ``pool`` distinct draws (:func:`pool_draws`), then the
    anchors not already among them.

    ``searched``: one entry per search trial, ``{"trial_id", "spec" (dict), "estimate"}`` (entries
    without a finite estimate are left out). Returns ``{"label", "spec", "estimate", "origin",
    "anchor"}`` dicts; an anchor the search found too keeps its search label and is marked.
    """
    usable = [s for s in searched if s.get("estimate") is not None and math.isfinite(float(s["estimate"]))]
    usable.sort(key=lambda s: (-float(s["estimate"]), str(s["trial_id"])))
    out: list[dict[str, Any]] = []
    seen: dict[tuple, dict[str, Any]] = {}
    for entry in usable:
        key = arch_key(entry["spec"])
        if key in seen:
            seen[key]["also_found_by"].append(str(entry["trial_id"]))
            continue
        if len(out) == k:
            continue
        row = {"label": f"searched{len(out) + 1}", "spec": _clean_spec(entry["spec"]), "estimate": float(entry["estimate"]),
               "origin": f"search trial {entry['trial_id']}", "anchor": None, "also_found_by": []}
        seen[key] = row
        out.append(row)
    for label, spec, origin in pool_draws(usable, pool, pool_from, depths, set(seen) | {arch_key(anchor(a, *depths)) for a in anchors},
                                          seed=pool_seed):
        seen[arch_key(spec)] = {}
        out.append({"label": label, "spec": _clean_spec(spec), "estimate": None, "origin": origin, "anchor": None,
                    "also_found_by": []})
    for name in anchors:
        spec = anchor(name, *depths)
        key = arch_key(spec)
        if key in seen:
            seen[key]["anchor"] = name
            continue
        row = {"label": name, "spec": _clean_spec(spec.to_dict()), "estimate": None, "origin": f"anchor {name}",
               "anchor": name, "also_found_by": []}
        seen[key] = row
        out.append(row)
    for row in out:
        row["arch"] = arch_line(row["spec"])
    return out


def pool_draws(searched: Sequence[Mapping[str, Any]], n: int, source: str, depths: tuple[int, int],
               taken: set, *, seed: int = 0) -> list[tuple[str, dict[str, Any], str]]:
    """``n`` distinct architectures not in ``taken``, as ``(label, spec, origin)``, reproducible from ``seed``.

    ``source="search"``: draw ``i`` samples each block's op from the final op probabilities of
    search ``i mod len(searched)`` (``searched`` in estimate order; a search without probabilities
    is drawn uniformly); ``"uniform"``: every op uniformly from the pools. Fewer than ``n`` when
    the space (or the probabilities' support) has no more distinct architectures to give.
    """
    from mmsearch.nas import DEFAULT_POOLS

    if n == 0:
        return []
    sources = list(searched) if source == "search" and searched else [None]
    fallback = (searched[0]["spec"].get("op_pools") if searched else None) or DEFAULT_POOLS
    rng, out, taken = random.Random(seed), [], set(taken)
    for attempt in range(200 * n):  # distinct draws; a peaked distribution may have few to give
        if len(out) == n:
            break
        entry = sources[attempt % len(sources)]
        probs = (entry["spec"].get("probs") if entry is not None else None) or {}
        pools = (entry["spec"].get("op_pools") if entry is not None else None) or fallback  # probs are over these
        spec = {"op_pools": {c: list(pools[c]) for c in ("enc", "dec")}}
        for chain, depth in zip(("enc", "dec"), depths):
            weights = probs.get(chain) or [[1.0] * len(pools[chain])] * depth
            spec[chain] = [[rng.choices(pools[chain], weights=w)[0]] for w in weights[:depth]]
        key = arch_key(spec)
        if key in taken:
            continue
        taken.add(key)
        origin = (f"drawn from search trial {entry['trial_id']}'s op probabilities" if entry is not None and probs
                  else "drawn uniformly from the search space")
        out.append((f"pool{len(out) + 1}", spec, origin))
    return out


def pick_winner(retrained: Sequence[Mapping[str, Any]], max_t: int) -> Mapping[str, Any]:
    """The entry with the best final ``val`` among those whose last ``epoch`` is ``max_t`` (ASHA let
    them run the whole budget); ties go to the earlier entry. Only val decides."""
    full = [r for r in retrained if r.get("epoch") == max_t and r.get("val") is not None and math.isfinite(float(r["val"]))]
    if not full:
        raise ValueError(f"no shortlisted architecture was trained for the full {max_t} epochs")
    return max(full, key=lambda r: (float(r["val"]), -retrained.index(r)))


def estimate_vs_retrained(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Kendall's tau between the search estimate and the retrained val of the searched candidates
    (anchors have no estimate); NaN with fewer than 2 of them."""
    both = [r for r in rows if r.get("estimate") is not None and r.get("val") is not None]
    return {"n": len(both), "kendall_tau": kendall_tau([float(r["estimate"]) for r in both], [float(r["val"]) for r in both])
            if len(both) >= 2 else math.nan}


def agreement(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """Fraction of blocks (encoder and decoder) where two specs run the same op."""
    ka, kb = arch_key(a), arch_key(b)
    pairs = [(x, y) for chain in (0, 1) for x, y in zip(ka[chain], kb[chain], strict=True)]
    return sum(x == y for x, y in pairs) / len(pairs) if pairs else math.nan


def chance_agreement(pools: Mapping[str, Sequence[str]], depths: tuple[int, int]) -> float:
    """Expected agreement of two independent uniform draws from the pools."""
    blocks = [1.0 / len(pools["enc"])] * depths[0] + [1.0 / len(pools["dec"])] * depths[1]
    return sum(blocks) / len(blocks) if blocks else math.nan


def search_agreement(specs: Sequence[Mapping[str, Any]], pools: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Seed-to-seed agreement of the searches' architectures: mean over pairs, and chance."""
    pairs = [agreement(a, b) for a, b in itertools.combinations(specs, 2)]
    depths = (len(arch_key(specs[0])[0]), len(arch_key(specs[0])[1])) if specs else (0, 0)
    return {"searches": len(specs), "pairs": len(pairs), "mean": statistics.fmean(pairs) if pairs else math.nan,
            "chance": chance_agreement(pools, depths) if specs else math.nan}


__all__ = ["ShortlistSettings", "agreement", "chance_agreement", "estimate_vs_retrained", "pick_winner", "pool_draws",
           "search_agreement", "shortlist_candidates"]
