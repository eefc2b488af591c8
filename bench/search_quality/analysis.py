"""The search-quality benchmark's figures: pure functions of the cell results."""
from __future__ import annotations

import itertools
import math
import statistics
from typing import Any, Iterable, Mapping, Sequence

from .settings import arch_line


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value)."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def chance_agreement(pools: Mapping[str, Sequence[str]], depths: Sequence[int]) -> float:
    """Expected fraction of blocks two independent uniform draws from the pools agree on."""
    blocks = [1.0 / len(pools["enc"])] * depths[0] + [1.0 / len(pools["dec"])] * depths[1]
    return sum(blocks) / len(blocks)


def agreement(a: Mapping[str, Any], b: Mapping[str, Any], chains: Sequence[str] = ("enc", "dec")) -> float:
    """Fraction of blocks (over ``chains``) where two spec dicts run the same op."""
    pairs = [(x[0], y[0]) for c in chains for x, y in zip(a[c], b[c], strict=True)]
    return sum(x == y for x, y in pairs) / len(pairs)


def op_frequency(specs: Sequence[Mapping[str, Any]], pools: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Per chain and op: the count in each spec, their mean, and the uniform expectation (depth / K)."""
    out: dict[str, Any] = {}
    for chain in ("enc", "dec"):
        depth = len(specs[0][chain])
        out[chain] = {
            op: {"counts": [sum(b[0] == op for b in s[chain]) for s in specs],
                 "mean": statistics.fmean(sum(b[0] == op for b in s[chain]) for s in specs),
                 "uniform": depth / len(pools[chain])}
            for op in pools[chain]
        }
    return out


def block_choices(specs: Sequence[Mapping[str, Any]], chain: str = "dec") -> list[dict[str, int]]:
    """Per block of ``chain``: how many specs chose each op there."""
    depth = len(specs[0][chain])
    return [dict(sorted(_count(s[chain][i][0] for s in specs).items())) for i in range(depth)]


def _count(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (NaN when undefined: fewer than 2 points or a constant sequence)."""
    if len(x) < 2:
        return math.nan
    from scipy.stats import kendalltau

    tau = kendalltau(x, y).statistic
    return float(tau) if tau is not None else math.nan


def analyse(settings: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The report's figures per task (see the module docstring)."""
    from mmsearch.nas import DEFAULT_POOLS

    out: dict[str, Any] = {}
    for task in settings["tasks"]:
        trains = [r for r in results.values() if r["kind"] == "train" and r["task"] == task]
        metric = trains[0]["metric"]
        groups: dict[str, list[Mapping[str, Any]]] = {}
        for r in trains:
            groups.setdefault(_group(r["label"]), []).append(r)
        rows = {}
        for r in sorted(trains, key=lambda r: (_order(r["label"]), r["label"], r["seed"])):
            rows[f"{r['label']}/seed{r['seed']}"] = {"label": r["label"], "group": _group(r["label"]), "seed": r["seed"],
                                                     "arch": r["arch"], "test": r["test"], "val": r["val"], "train_s": r["train_s"]}
        keys = sorted({k for r in trains for k in r["test"]})
        summary = {g: {k: mean_std([r["test"][k] for r in rs if k in r["test"]]) for k in keys} for g, rs in groups.items()}
        noise = summary.get("mcan", {}).get(metric, {"std": math.nan})["std"]
        per_strategy = {}
        for strategy in settings["strategies"]:
            searches = [results[f"search_{task}_{strategy}_seed{s}"] for s in settings["search_seeds"]]
            specs = [s["final_arch"] for s in searches]
            pools = specs[0].get("op_pools") or DEFAULT_POOLS
            pair = [agreement(a, b) for a, b in itertools.combinations(specs, 2)]
            proxies = [results[f"proxy_{task}_{strategy}_seed{s}"]["scores"] for s in settings["search_seeds"]]
            standalone = {r["label"]: r["test"][metric] for r in trains if r["seed"] == 0}
            taus = []
            for scores in proxies:
                labels = [lab for lab in scores if lab in standalone]
                taus.append(kendall_tau([scores[lab] for lab in labels], [standalone[lab] for lab in labels]))
            per_strategy[strategy] = {
                "archs": [arch_line(s) for s in specs],
                "search_val_final": [s["final_val_metric"] for s in searches],
                "search_val_best": [s["best_val_metric"] for s in searches],
                "retrained_val": [_by_label(trains, f"searched_{strategy}_seed{s['seed']}")["val"].get(metric) for s in searches],
                "retrained_test": [_by_label(trains, f"searched_{strategy}_seed{s['seed']}")["test"].get(metric) for s in searches],
                "agreement": {
                    "pairs": pair, "mean": statistics.fmean(pair) if pair else math.nan,
                    "enc_mean": statistics.fmean(agreement(a, b, ("enc",)) for a, b in itertools.combinations(specs, 2)) if pair else math.nan,
                    "dec_mean": statistics.fmean(agreement(a, b, ("dec",)) for a, b in itertools.combinations(specs, 2)) if pair else math.nan,
                    "chance": chance_agreement(pools, settings["depths"]),
                    "chance_enc": 1.0 / len(pools["enc"]), "chance_dec": 1.0 / len(pools["dec"]),
                },
                "entropy": {k: mean_std([s["entropy"][k] for s in searches]) for k in ("enc_mean", "dec_mean", "normalized_mean")},
                "entropy_max": {"enc": math.log(len(pools["enc"])), "dec": math.log(len(pools["dec"]))},
                "op_frequency": op_frequency(specs, pools),
                "decoder_blocks": block_choices(specs, "dec"),
                "encoder_blocks": block_choices(specs, "enc"),
                "proxy": {"scores": proxies, "kendall_tau": taus, "kendall_tau_mean": _nanmean(taus)},
                "search_s": [s["search_s"] for s in searches],
            }
        searched = [g for g in summary if g.startswith("searched_")]
        random_mean = summary.get("random", {}).get(metric, {}).get("mean", math.nan)
        out[task] = {
            "metric": metric,
            "rows": rows,
            "summary": summary,
            "retrain_noise_std": noise,
            "searched_minus_random": {g: summary[g][metric]["mean"] - random_mean for g in searched},
            "searched_minus_mcan": {g: summary[g][metric]["mean"] - summary.get("mcan", {}).get(metric, {}).get("mean", math.nan)
                                    for g in searched},
            "search": per_strategy,
        }
    return out


def _group(label: str) -> str:
    if label.startswith("random"):
        return "random"
    if label.startswith("searched_"):
        return "searched_" + label.split("_")[1]
    return label


def _order(label: str) -> int:
    return 0 if label.startswith("searched") else 1 if label == "mcan" else 2 if label == "mmnas_prior" else 3


def _by_label(trains: Sequence[Mapping[str, Any]], label: str) -> Mapping[str, Any]:
    return next(r for r in trains if r["label"] == label)


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.fmean(finite) if finite else math.nan
