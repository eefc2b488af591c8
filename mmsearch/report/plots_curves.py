"""Per-epoch curves: the experiment's metric for every trial (with ASHA's rungs), FuseMix's
retrieval recall, loss and temperature, and searched vs retrained metrics.

Every function returns a ``matplotlib.figure.Figure`` (render with ``style.png_bytes``).
"""
from __future__ import annotations

from typing import Any, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from mmsearch.report.collect import ExperimentData, TrialData
from mmsearch.report.style import (STOP_MARKERS, metric_label, new_figure, primary_labels, style_axes, trial_colours,
                                   trial_label)


def experiment_task(data: ExperimentData) -> str | None:
    """The search task (vqa / itm / vg) of the experiment's base config, when it has one."""
    base = data.spec.get("base_config")
    task = base.get("data", {}).get("task") if isinstance(base, dict) and isinstance(base.get("data"), dict) else None
    return task if isinstance(task, str) else None


def learning_curves(data: ExperimentData) -> Figure:
    """The metric vs epoch, one line per trial; rungs as dashed lines; each curve ends in a stop-reason marker.

    The right panel counts the trials that reached each rung (ASHA's funnel).
    """
    fig = new_figure(11.0, 5.0)
    ax, funnel = fig.subplots(1, 2, gridspec_kw={"width_ratios": [4.2, 1.0]})
    colours = trial_colours([t.trial_id for t in data.trials])
    best = data.best_trial
    label_trials = len(data.trials) <= 12
    for trial in data.trials:
        epochs, values = trial.series(data.metric)
        if not epochs:
            continue
        is_best = best is not None and trial.trial_id == best.trial_id
        ax.plot(
            epochs, values, color=colours[trial.trial_id], linewidth=2.6 if is_best else 1.4,
            alpha=1.0 if is_best or label_trials else 0.75, zorder=3 if is_best else 2,
            label=trial_label(trial.trial_id, trial.config, is_best) if label_trials else None,
        )
        marker, edge, _ = STOP_MARKERS[trial.stop_reason]
        ax.plot(epochs[-1], values[-1], marker=marker, markersize=9 if marker == "*" else 7, color=colours[trial.trial_id],
                markeredgecolor=edge, markeredgewidth=1.2, linestyle="none", zorder=4)
    for rung in data.rungs:
        ax.axvline(rung, color="#888888", linestyle="--", linewidth=1.0, zorder=1)
        ax.annotate(f"rung {rung:g}", (rung, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 2),
                    textcoords="offset points", fontsize=8, color="#555555", ha="center", va="bottom")
    ax.axvline(data.max_t, color="#444444", linestyle=":", linewidth=1.0, zorder=1)
    ax.annotate("max_t", (data.max_t, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 2),
                textcoords="offset points", fontsize=8, color="#555555", ha="center", va="bottom")
    first = min((int(t.history[0]["epoch"]) for t in data.trials if t.history), default=1)
    last = max([data.max_t, *(t.last_epoch for t in data.trials if t.last_epoch is not None)])
    ax.set_xlim(min(first, 1) - 0.5, last + 0.5)  # recipes count epochs from 1; show a 0 if one reports it
    ax.set_xlabel("epoch (ASHA's fidelity unit)")
    ax.set_ylabel(metric_label(data.metric, experiment_task(data)))
    direction = "higher" if data.mode == "max" else "lower"
    ax.set_title(f"{data.metric} per trial ({direction} is better); {len(data.trials)} trials", pad=16)
    _integer_epochs(ax, last - min(first, 1) + 1)
    style_axes(ax)
    status_handles = [
        Line2D([], [], marker=m, color="white", markerfacecolor="#BBBBBB", markeredgecolor=e, markersize=8, label=text)
        for reason, (m, e, text) in STOP_MARKERS.items()
        if data.count(reason)
    ]
    first = ax.legend(handles=status_handles, loc="lower right" if data.mode == "max" else "upper right",
                      fontsize=8, title="curve ends", title_fontsize=8, framealpha=0.9)
    if label_trials and ax.get_legend_handles_labels()[0]:
        ax.add_artist(first)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=7.5, ncol=min(3, len(data.trials)),
                  frameon=False, title="trial", title_fontsize=8)
    _rung_funnel(funnel, data)
    return fig


def _rung_funnel(ax: Any, data: ExperimentData) -> None:
    levels = [*data.rungs, float(data.max_t)] if data.rungs else [1.0, float(data.max_t)]
    counts = [sum(t.last_epoch is not None and t.last_epoch >= level for t in data.trials) for level in levels]
    names = [f"{level:g}" for level in levels]
    bars = ax.barh(range(len(levels)), counts, color="#5D6D7E", height=0.6)
    ax.bar_label(bars, labels=[str(c) for c in counts], padding=2, fontsize=8)
    ax.set_yticks(range(len(levels)), names)
    ax.set_ylabel("epoch reached (rungs, max_t)")
    ax.set_xlabel("trials")
    ax.set_xlim(0, max(len(data.trials), 1) * 1.25)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("trials per rung", pad=16)
    style_axes(ax)
    ax.grid(False)


def _integer_epochs(ax: Any, epochs: int) -> None:
    """Whole epochs on the x axis, at most 12 ticks for ``epochs`` epochs shown."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=max(1, min(epochs, 12))))


def recall_curves(trial: TrialData, ks: Sequence[int] = (1, 5, 10)) -> Figure:
    """Validation recall@K vs epoch in both directions for one (the best) FuseMix trial."""
    fig = new_figure(10.0, 4.0)
    axes = fig.subplots(1, 2, sharey=True)
    shades = {1: "#1B4F72", 5: "#2E86C1", 10: "#85C1E9"}
    for ax, (direction, title) in zip(axes, (("i2t", "image → text"), ("t2i", "text → image"))):
        for k in ks:
            epochs, values = trial.series(f"val_{direction}_r{k}")
            if epochs:
                ax.plot(epochs, values, marker="o", markersize=3.5, linewidth=1.8, color=shades.get(k, "#555555"), label=f"R@{k}")
        ax.set_title(f"{title} (trial {trial.trial_id})")
        ax.set_xlabel("epoch")
        style_axes(ax)
        if trial.history:
            _integer_epochs(ax, len(trial.history))
        ax.legend(fontsize=8, loc="best")
    axes[0].set_ylabel("validation recall (%)")
    return fig


def loss_and_temperature(data: ExperimentData) -> Figure:
    """Training loss and the learned temperature vs epoch, one line per trial."""
    fig = new_figure(10.0, 4.0)
    axes = fig.subplots(1, 2)
    colours = trial_colours([t.trial_id for t in data.trials])
    best = data.best_trial
    for ax, key, title in ((axes[0], "loss", "training loss (InfoNCE)"), (axes[1], "temperature", "learned temperature")):
        for trial in data.trials:
            epochs, values = trial.series(key)
            if epochs:
                is_best = best is not None and trial.trial_id == best.trial_id
                ax.plot(epochs, values, color=colours[trial.trial_id], linewidth=2.4 if is_best else 1.2,
                        label=trial_label(trial.trial_id, trial.config, is_best))
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(title)
        _integer_epochs(ax, data.max_t + 1)
        style_axes(ax)
    if len(data.trials) <= 12:
        axes[1].legend(fontsize=7.5, ncol=2)
    return fig


def searched_vs_retrained(rows: list[dict[str, Any]], task: str | None = None) -> Figure:
    """Grouped bars: each metric measured on the searched supernet and after retraining the derived net.

    ``rows``: ``{"metric": name, "searched": value or None, "retrained": value or None}``.
    """
    fig = new_figure(max(5.0, 1.3 * len(rows) + 2.0), 4.0)
    ax = fig.subplots()
    positions = range(len(rows))
    width = 0.38
    for offset, key, colour in ((-width / 2, "searched", "#95A5A6"), (width / 2, "retrained", "#2E86C1")):
        values = [row.get(key) if isinstance(row.get(key), (int, float)) else 0.0 for row in rows]
        bars = ax.bar([p + offset for p in positions], values, width=width, color=colour, label=key)
        ax.bar_label(bars, labels=[f"{row[key]:.1f}" if isinstance(row.get(key), (int, float)) else "n/a" for row in rows],
                     fontsize=8, padding=2)
    ax.set_xticks(list(positions), [row["metric"] for row in rows], rotation=20 if len(rows) > 4 else 0, ha="right" if len(rows) > 4 else "center")
    labels = primary_labels(task)
    ax.set_ylabel(f"validation metric ({labels.unit if labels is not None else '%'})")
    ax.set_title("searched (supernet weights)\nvs retrained (derived network from scratch)")
    ax.legend(fontsize=8)
    style_axes(ax)
    return fig


__all__ = ["experiment_task", "learning_curves", "loss_and_temperature", "recall_curves", "searched_vs_retrained"]
