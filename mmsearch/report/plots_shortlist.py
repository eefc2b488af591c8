"""The shortlist stage in the report: its ASHA ladder and search estimate vs retrained result.

Input: the job's ``shortlist.json`` (``mmsearch.orchestration.jobs.shortlist``).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from matplotlib.figure import Figure

from mmsearch.report.style import new_figure, style_axes


def shortlist_figure(record: Mapping[str, Any]) -> Figure:
    """Left: val per epoch of every shortlisted architecture (the ASHA ladder; the winner bold).
    Right: the search estimate vs the retrained val of the searched candidates, with Kendall's tau."""
    fig = new_figure(11.0, 4.5)
    ladder, scatter = fig.subplots(1, 2)
    metric = str(record.get("metric", "val_metric"))
    winner = (record.get("winner") or {}).get("label")
    for row in record.get("rows", []):
        points = row.get("val_per_epoch") or []
        if not points:
            continue
        bold = row["label"] == winner
        ladder.plot([p[0] for p in points], [p[1] for p in points], marker="o", linewidth=2.6 if bold else 1.2,
                    label=f"{row['label']}{' (winner)' if bold else ''}: {row.get('stop_reason') or '?'}")
    ladder.set_xlabel("epoch")
    ladder.set_ylabel(f"retrained val {metric}")
    ladder.set_title("shortlist under ASHA")
    ladder.legend(fontsize=7, loc="best")
    style_axes(ladder)
    both = [r for r in record.get("rows", []) if r.get("estimate") is not None and r.get("val") is not None]
    for row in both:
        scatter.scatter([row["estimate"]], [row["val"]], s=40)
        scatter.annotate(row["label"], (row["estimate"], row["val"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    tau = (record.get("estimate_vs_retrained") or {}).get("kendall_tau")
    tau_text = f"{tau:.2f}" if isinstance(tau, (int, float)) and math.isfinite(tau) else "n/a"
    scatter.set_xlabel(f"search estimate (supernet val {metric})")
    scatter.set_ylabel(f"retrained val {metric} (last epoch)")
    scatter.set_title(f"estimate vs retrained: Kendall tau {tau_text} (n={len(both)})")
    style_axes(scatter)
    return fig


def shortlist_caption(record: Mapping[str, Any]) -> str:
    winner = record.get("winner")
    metric = str(record.get("metric", "val_metric"))
    rows = record.get("rows", [])
    listing = "; ".join(f"{r['label']} ({r['origin']}) {r['arch']}: val {r['val']:.4g} at epoch {r['epoch']}, {r.get('stop_reason')}"
                        if r.get("val") is not None else f"{r['label']} ({r['origin']}): no result" for r in rows)
    if winner is None:
        return f"Shortlist without a winner ({record.get('error')}). {listing}."
    search = record.get("search") or {}
    agreement = search.get("agreement") or {}
    agree = (f" Seed-to-seed agreement of the searches: {agreement['mean']:.2f} of the blocks (chance {agreement['chance']:.2f})."
             if isinstance(agreement.get("mean"), float) and math.isfinite(agreement["mean"]) else "")
    return (f"Retrained from scratch under ASHA: {listing}. Winner on val: {winner['label']}; its test {metric} "
            f"{winner['test'].get(metric, math.nan):.4g}, evaluated once after the choice.{agree}")


__all__ = ["shortlist_caption", "shortlist_figure"]
