"""The architecture oracle's file, and scoring an estimator against it without retraining.

An oracle file (``bench/results/arch_oracle_<task>.json``, written by ``bench/bench_arch_oracle.py``)::

    {"task": "vqa", "metric": "vqa_acc", "settings": {...},
     "archs": [{"label": "mcan", "spec": {"enc": [...], "dec": [...]},
                "val": {"mean": 41.2, "std": 0.4, "n": 3, "values": [...]}, "test": {...},
                "parameters": 123456, "train_cpu_s": {"mean": 61.0, "total": 183.0}}, ...]}

:func:`score_estimator` takes an estimate per label (higher = better) and returns

* ``kendall_tau``: Kendall's tau-b between the estimates and the oracle's val means;
* ``top1_regret``: the test mean of the oracle's best architecture *chosen on val* minus the
  test mean of the estimator's top architecture (points of the metric; > 0 is worse, it can be
  negative when the val choice is itself unlucky on test);
* ``topk_regret``: the same for a shortlist: the estimator's top ``k`` are retrained and the one
  with the best val mean is taken, as the jobs' shortlist stage does.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class OracleArch:
    label: str
    spec: dict[str, Any]
    val_mean: float
    val_std: float
    test_mean: float
    test_std: float
    parameters: int | None = None


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (0 for one value), count and the values."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std of no values")
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": values}


def load_oracle(source: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], list[OracleArch]]:
    """(the file's header without ``archs``, its architectures); a malformed file fails naming the entry."""
    raw = json.loads(Path(source).read_text()) if not isinstance(source, Mapping) else source
    if not isinstance(raw, Mapping) or not isinstance(raw.get("archs"), list):
        raise ValueError(f"{source if not isinstance(source, Mapping) else 'oracle'}: expected an object with an 'archs' list")
    out, labels = [], set()
    for i, entry in enumerate(raw["archs"]):
        try:
            arch = OracleArch(str(entry["label"]), dict(entry["spec"]), float(entry["val"]["mean"]), float(entry["val"]["std"]),
                              float(entry["test"]["mean"]), float(entry["test"]["std"]), entry.get("parameters"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"oracle entry {i}: {type(exc).__name__}: {exc}") from None
        if arch.label in labels:
            raise ValueError(f"oracle entry {i}: label {arch.label!r} appears twice")
        labels.add(arch.label)
        out.append(arch)
    return {k: v for k, v in raw.items() if k != "archs"}, out


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (``scipy.stats.kendalltau``); NaN with fewer than 2 points or a constant sequence."""
    if len(x) != len(y):
        raise ValueError(f"kendall_tau of sequences of lengths {len(x)} and {len(y)}")
    if len(x) < 2:
        return math.nan
    from scipy.stats import kendalltau

    tau = kendalltau(list(x), list(y)).statistic
    return float(tau) if tau is not None else math.nan


def ranked(estimates: Mapping[str, float]) -> list[str]:
    """Labels by estimate, best first; ties broken by label (deterministic)."""
    return sorted(estimates, key=lambda label: (-float(estimates[label]), label))


def rank_average(*estimates: Mapping[str, float]) -> dict[str, float]:
    """One estimator from several (label -> value, higher = better): each label's mean rank (1 =
    worst, ties share the mean rank) over the estimators, for the labels every one of them scores.
    Ranks, not values: the estimators' scales (an accuracy, a supernet's probability) never mix."""
    from scipy.stats import rankdata

    if not estimates:
        raise ValueError("rank_average needs at least one estimator")
    labels = sorted(set(estimates[0]).intersection(*estimates[1:]))
    ranks = [rankdata([float(e[label]) for label in labels]) for e in estimates]
    return {label: float(sum(r[i] for r in ranks) / len(ranks)) for i, label in enumerate(labels)}


def score_estimator(oracle: Sequence[OracleArch], estimates: Mapping[str, float], *, k: int = 5) -> dict[str, Any]:
    """Score ``estimates`` (label -> value, higher = better) against ``oracle``; see the module docstring.

    Only labels in both count; a NaN estimate is an error (an estimator must score every architecture it is given).
    """
    by_label = {a.label: a for a in oracle}
    unknown = sorted(set(estimates) - set(by_label))
    if unknown:
        raise ValueError(f"estimates for architectures the oracle does not have: {unknown}")
    bad = sorted(label for label, v in estimates.items() if not math.isfinite(float(v)))
    if bad:
        raise ValueError(f"non-finite estimates for {bad}")
    if len(estimates) < 2:
        raise ValueError("an estimator needs at least 2 scored architectures")
    labels = ranked(estimates)
    reference = max(oracle, key=lambda a: (a.val_mean, -oracle.index(a)))  # ties: the earlier entry
    top1 = by_label[labels[0]]
    shortlist = [by_label[label] for label in labels[:k]]
    picked = max(shortlist, key=lambda a: (a.val_mean, -labels.index(a.label)))
    return {
        "n": len(labels),
        "k": k,
        "kendall_tau": kendall_tau([float(estimates[lab]) for lab in labels], [by_label[lab].val_mean for lab in labels]),
        "reference": reference.label,
        "reference_test": reference.test_mean,
        "top1": top1.label,
        "top1_regret": reference.test_mean - top1.test_mean,
        "topk": [a.label for a in shortlist],
        "topk_pick": picked.label,
        "topk_regret": reference.test_mean - picked.test_mean,
        "noise_std": statistics.fmean(a.test_std for a in oracle),
    }


__all__ = ["OracleArch", "kendall_tau", "load_oracle", "mean_std", "rank_average", "ranked", "score_estimator"]
