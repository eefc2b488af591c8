"""Per-epoch figures of a search: the derived spec as a compact string, op counts, entropy of the
block distributions, how many blocks changed their choice (pure functions), step-log means."""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from mmsearch.nas import ArchSpec, arch_entropy

SHORT_NAMES = {"self_att": "SA", "guided_att": "GA", "rel_self_att": "RSA", "feed_forward": "FFN"}


def arch_string(spec: ArchSpec) -> str:
    """``"SA FFN SA FFN | RSA GA FFN"``: encoder blocks, then decoder blocks (MMnas abbreviations)."""
    enc = " ".join(SHORT_NAMES.get(name, name) for name in spec.enc)
    dec = " ".join(SHORT_NAMES.get(name, name) for name in spec.dec)
    return f"{enc} | {dec}"


def arch_metrics(spec: ArchSpec, alphas: Mapping[str, Any], previous_argmax: Mapping[str, list[int]]) -> dict[str, Any]:
    """Figures of the derived architecture ``spec`` (with its pools) and the alphas it came from.

    * ``arch``: :func:`arch_string`; ``arch_changes``: blocks whose op differs from ``previous_argmax``;
    * ``enc_<op>`` / ``dec_<op>``: how many blocks use each pool op (0 included, so keys are stable);
    * ``entropy_{enc,dec}_{mean,min}`` (nats) and ``entropy_norm`` (mean of entropy / log K over all
      blocks: 1 = uniform, 0 = every block certain).
    """
    assert spec.op_pools is not None and spec.probs is not None
    out: dict[str, Any] = {"arch": arch_string(spec)}
    changes = 0
    for chain, ops in (("enc", spec.enc), ("dec", spec.dec)):
        pool = spec.op_pools[chain]
        index = [pool.index(name) for name in ops]
        before = previous_argmax.get(chain, index)
        changes += sum(a != b for a, b in zip(index, before))
        for name in pool:
            out[f"{chain}_{name}"] = ops.count(name)
    out["arch_changes"] = changes
    entropy = arch_entropy(alphas)
    for chain in ("enc", "dec"):
        out[f"entropy_{chain}_mean"] = entropy[f"{chain}_mean"]
        out[f"entropy_{chain}_min"] = min(entropy[chain]) if entropy[chain] else 0.0
    out["entropy_norm"] = entropy["normalized_mean"]
    return out


def epoch_line(metrics: Mapping[str, Any], epochs: int, metric: str, warmup: bool) -> str:
    """One readable log line per epoch."""
    def num(key: str, fmt: str = ".4g") -> str:
        value = metrics.get(key, math.nan)
        return "-" if isinstance(value, float) and math.isnan(value) else format(value, fmt)

    phase = " warm-up" if warmup else ""
    return (
        f"epoch {metrics['epoch']}/{epochs}{phase}: val {metric}={num('val_metric', '.2f')} "
        f"(best {num('best_val_metric', '.2f')} @ {metrics.get('best_epoch', 0)}) "
        f"w_loss={num('w_loss')} a_loss={num('a_loss')} "
        f"H(enc)={num('entropy_enc_mean', '.3f')} H(dec)={num('entropy_dec_mean', '.3f')} "
        f"changed={metrics.get('arch_changes', 0)} {num('epoch_s', '.1f')}s | {metrics.get('arch', '')}"
    )


class StepLogMeans:
    """Running means of the numeric entries of step logs (``weight_step`` / ``arch_step`` results), by key."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def add(self, logs: Mapping[str, Any]) -> None:
        for key, value in logs.items():
            if isinstance(value, (int, float)):
                self._sums[key] = self._sums.get(key, 0.0) + float(value)
                self._counts[key] = self._counts.get(key, 0) + 1

    def means(self, prefix: str, empty_keys: Iterable[str] = ()) -> dict[str, float]:
        out = {f"{prefix}{key}": float("nan") for key in empty_keys}
        out.update({f"{prefix}{key}": total / self._counts[key] for key, total in self._sums.items()})
        return out


__all__ = ["SHORT_NAMES", "StepLogMeans", "arch_metrics", "arch_string", "epoch_line"]
