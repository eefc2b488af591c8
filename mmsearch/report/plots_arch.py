"""Architecture figures of a search: block x op probability heat maps over epochs, entropy and op
counts over epochs, and the derived architecture as a block diagram.

Inputs are the recipe's ``arch_history.json`` (``{"epochN": {"enc", "dec", "probs", "op_pools", ...}}``)
and architecture spec dicts (``best_arch.json``); nothing is recomputed from model weights, so a
heat map shows exactly the probabilities the search recorded.
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from mmsearch.report.collect import TrialData
from mmsearch.report.style import (
    new_figure,
    op_colour,
    op_label,
    op_long_name,
    style_axes,
    trial_colours,
)

CHAINS = (("enc", "encoder (text tokens)"), ("dec", "decoder (image regions)"))
_EPOCH_KEY = re.compile(r"^epoch(\d+)$")


def history_epochs(arch_history: Mapping[str, Any]) -> list[int]:
    """The epochs recorded in an ``arch_history.json`` mapping, ascending."""
    return sorted(int(m.group(1)) for key in arch_history if (m := _EPOCH_KEY.match(key)))


def blocks(entry: Mapping[str, Any], chain: str) -> list[str]:
    """The op of every block of one chain (MMnas lists each block as a one-op list); for a spec of
    the fusion search, the ``stream:op`` candidate of every block of that stage."""
    if chain not in entry and isinstance(entry.get("stages"), Mapping):
        return [str(name) for name in entry["stages"].get(chain, [])]
    return [block[0] if isinstance(block, list) else str(block) for block in entry.get(chain, [])]


def prob_matrix(entry: Mapping[str, Any], chain: str) -> np.ndarray | None:
    """``[blocks, ops]`` probabilities of one chain at one epoch, or None when not recorded."""
    probs = entry.get("probs")
    if not isinstance(probs, Mapping) or not probs.get(chain):
        return None
    return np.asarray(probs[chain], dtype=float)


def pool(entry: Mapping[str, Any], chain: str) -> list[str]:
    """The candidate ops of a chain (columns of :func:`prob_matrix`)."""
    pools = entry.get("op_pools")
    if isinstance(pools, Mapping) and pools.get(chain):
        return list(pools[chain])
    return sorted(set(blocks(entry, chain)))


def select_epochs(epochs: Sequence[int], max_panels: int = 6, always: Sequence[int] = ()) -> list[int]:
    """Up to ``max_panels`` epochs: the first, the last, ``always`` (e.g. the best) and evenly spaced others."""
    epochs = sorted(set(epochs))
    if len(epochs) <= max_panels:
        return epochs
    chosen = {epochs[0], epochs[-1], *(e for e in always if e in epochs)}
    for index in np.linspace(0, len(epochs) - 1, max_panels).round().astype(int):
        if len(chosen) >= max_panels:
            break
        chosen.add(epochs[int(index)])
    return sorted(chosen)[:max_panels] if len(chosen) > max_panels else sorted(chosen)


def arch_heatmaps(
    arch_history: Mapping[str, Any],
    *,
    epochs: Sequence[int] | None = None,
    title: str = "",
    notes: Mapping[int, str] | None = None,
) -> Figure:
    """Small multiples: one row per selected epoch, encoder and decoder heat maps (ops x blocks).

    Cell = the recorded probability of that op in that block; the chosen (argmax) op of every
    block is outlined, and tick labels of the ops carry the op colours. ``notes`` adds text to an
    epoch's row title (``"warm-up"``, ``"best"``).
    """
    shown = list(epochs) if epochs is not None else select_epochs(history_epochs(arch_history))
    entries = [arch_history[f"epoch{e}"] for e in shown]
    first = entries[0]
    depth = {chain: max(len(blocks(first, chain)), 1) for chain, _ in CHAINS}
    ops = {chain: pool(first, chain) for chain, _ in CHAINS}
    width = min(18.0, 2.5 + 0.42 * (depth["enc"] + depth["dec"]))
    row_height = 0.45 + 0.28 * max(len(ops["enc"]), len(ops["dec"]))
    fig = new_figure(width, 0.9 + row_height * len(shown))
    axes = fig.subplots(len(shown), 2, squeeze=False, gridspec_kw={"width_ratios": [depth["enc"], depth["dec"]]})
    image = None
    annotate = depth["enc"] + depth["dec"] <= 36
    for row, (epoch, entry) in enumerate(zip(shown, entries)):
        for col, (chain, chain_title) in enumerate(CHAINS):
            ax = axes[row, col]
            matrix = prob_matrix(entry, chain)
            if matrix is None or matrix.size == 0:
                ax.set_axis_off()
                ax.text(0.5, 0.5, "no probabilities recorded", ha="center", va="center", transform=ax.transAxes)
                continue
            image = ax.imshow(matrix.T, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto", interpolation="nearest")
            chosen = matrix.argmax(axis=1)
            for block, op_index in enumerate(chosen):
                ax.add_patch(_cell_outline(block, op_index))
                if annotate:
                    for k, p in enumerate(matrix[block]):
                        ax.text(block, k, f"{p:.2f}", ha="center", va="center", fontsize=6.5,
                                color="white" if p < 0.6 else "black")
            names = ops[chain]
            ax.set_yticks(range(len(names)), [op_label(n) for n in names])
            for tick, name in zip(ax.get_yticklabels(), names):
                tick.set_color(op_colour(name))
                tick.set_fontweight("bold")
            ax.set_xticks(range(matrix.shape[0]), [str(i + 1) for i in range(matrix.shape[0])], fontsize=7)
            ax.tick_params(length=0, labelsize=8)
            if row == len(shown) - 1:
                ax.set_xlabel(f"{chain} block")
            if row == 0:
                ax.set_title(chain_title, fontsize=10)
        note = (notes or {}).get(epoch)
        axes[row, 0].set_ylabel(f"epoch {epoch}" + (f"\n({note})" if note else ""), fontsize=9, rotation=0, ha="right", va="center")
    if image is not None:
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.9, pad=0.01, aspect=30)
        bar.set_label("probability of the op in the block", fontsize=8.5)
        bar.ax.tick_params(labelsize=8)
    fig.suptitle(title or "architecture weights per block (chosen op outlined)", fontsize=11)
    return fig


def _cell_outline(block: int, op_index: int) -> Any:
    return Rectangle((block - 0.5, op_index - 0.5), 1.0, 1.0, fill=False, edgecolor="#FF3B30", linewidth=1.6)


def normalised_entropy(entry: Mapping[str, Any], chain: str | None = None) -> float | None:
    """Mean over blocks of H(p) / log K (1 = uniform, 0 = certain), for one chain or both."""
    values = []
    for name, _ in CHAINS:
        if chain not in (None, name):
            continue
        matrix = prob_matrix(entry, name)
        if matrix is None or matrix.shape[1] < 2:
            continue
        p = np.clip(matrix, 1e-12, 1.0)
        values.extend((-(p * np.log(p)).sum(axis=1) / math.log(matrix.shape[1])).tolist())
    return float(np.mean(values)) if values else None


def search_dynamics(trials: Sequence[TrialData], best: TrialData, warmup_epochs: int = 0) -> Figure:
    """Normalised entropy of the block distributions for every trial, and the best trial's op counts.

    Entropy comes from the recorded probabilities (``arch_history``); op counts are the derived
    architecture's blocks per op at every epoch, stacked in op colours.
    """
    fig = new_figure(13.0, 4.2)
    ax_entropy, ax_enc, ax_dec = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.5, 1.0, 1.0]})
    colours = trial_colours([t.trial_id for t in trials])
    for trial in trials:
        if not trial.arch_history:
            continue
        epochs = history_epochs(trial.arch_history)
        points = [(e, normalised_entropy(trial.arch_history[f"epoch{e}"])) for e in epochs]
        points = [(e, h) for e, h in points if h is not None]
        if not points:
            continue
        is_best = trial.trial_id == best.trial_id
        ax_entropy.plot(*zip(*points), color=colours[trial.trial_id], linewidth=2.6 if is_best else 1.2,
                        alpha=1.0 if is_best else 0.8, label=trial.trial_id + (" (best)" if is_best else "") if len(trials) <= 12 else None)
    if warmup_epochs:
        ax_entropy.axvspan(0.5, warmup_epochs + 0.5, color="#F2F3F4", zorder=0, label="warm-up (weights only)")
    ax_entropy.set_ylim(-0.02, 1.05)
    ax_entropy.set_xlabel("epoch")
    ax_entropy.set_ylabel("normalised entropy (1 = uniform, 0 = decided)")
    ax_entropy.set_title("entropy of the block distributions (H / log K)")
    style_axes(ax_entropy)
    if ax_entropy.get_legend_handles_labels()[0]:
        ax_entropy.legend(fontsize=7.5, ncol=2, loc="best")
    for ax, (chain, chain_title) in ((ax_enc, CHAINS[0]), (ax_dec, CHAINS[1])):
        _op_count_bars(ax, best, chain)
        ax.set_title(f"best trial: ops in the {chain_title.split(' ')[0]}")
    return fig


def _op_count_bars(ax: Any, trial: TrialData, chain: str) -> None:
    history = trial.arch_history or {}
    epochs = history_epochs(history)
    if not epochs:
        ax.set_axis_off()
        return
    names = pool(history[f"epoch{epochs[0]}"], chain)
    bottom = np.zeros(len(epochs))
    for name in names:
        counts = np.array([blocks(history[f"epoch{e}"], chain).count(name) for e in epochs], dtype=float)
        ax.bar(epochs, counts, bottom=bottom, color=op_colour(name), width=0.8, label=op_label(name), edgecolor="white", linewidth=0.5)
        bottom += counts
    ax.set_xlabel("epoch")
    ax.set_ylabel("blocks (derived architecture)")
    ax.set_ylim(0, max(bottom.max(), 1) * 1.02)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(len(epochs), 12)))
    style_axes(ax)
    ax.grid(False)
    handles, labels = ax.get_legend_handles_labels()  # top of the stack first
    ax.legend(handles[::-1], labels[::-1], fontsize=7.5, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def arch_diagram(spec: Mapping[str, Any], *, title: str = "") -> Figure:
    """The architecture as two rows of coloured op boxes (encoder over text, decoder over regions).

    Arrows run block to block; dashed orange arrows carry the encoder's output to every guided-
    attention (GA) block. Under each box, the probability the search gave the chosen op.
    A fusion spec (``blocks`` with streams) is drawn by :func:`mmsearch.report.plots_fusion.fusion_diagram`.
    """
    if "blocks" in spec:
        from mmsearch.report.plots_fusion import fusion_diagram

        return fusion_diagram(spec, title=title)
    enc, dec = blocks(spec, "enc"), blocks(spec, "dec")
    probs = {chain: prob_matrix(spec, chain) for chain in ("enc", "dec")}
    pools = {chain: pool(spec, chain) for chain in ("enc", "dec")}
    columns = max(len(enc), len(dec), 1)
    fig = new_figure(min(22.0, 3.2 + 0.95 * columns), 3.8)
    ax = fig.subplots()
    ax.set_xlim(-2.3, columns + 1.2)
    ax.set_ylim(-0.35, 2.75)
    ax.set_axis_off()
    rows = {"enc": 2.0, "dec": 0.55}
    ends = {}
    for chain, ops in (("enc", enc), ("dec", dec)):
        y = rows[chain]
        ax.text(-2.2, y, "text tokens" if chain == "enc" else "regions\n+ boxes", ha="left", va="center", fontsize=9, color="#333333")
        previous = (-1.05, y)
        for i, name in enumerate(ops):
            x = float(i)
            ax.add_patch(FancyBboxPatch((x - 0.38, y - 0.26), 0.76, 0.52, boxstyle="round,pad=0.02,rounding_size=0.08",
                                        facecolor=op_colour(name), edgecolor="#333333", linewidth=0.8, zorder=3))
            ax.text(x, y, op_label(name), ha="center", va="center", color="white", fontsize=9, fontweight="bold", zorder=4)
            p = _chosen_probability(probs[chain], pools[chain], i, name)
            if p is not None:
                ax.text(x, y - 0.38, f"{p:.2f}", ha="center", va="center", fontsize=7, color="#555555")
            ax.add_patch(FancyArrowPatch(previous, (x - 0.4, y), arrowstyle="-|>", mutation_scale=9, color="#555555", linewidth=0.9))
            previous = (x + 0.4, y)
        if chain == "enc" and ops:  # into the output node
            ax.add_patch(FancyArrowPatch(previous, (len(ops) - 0.37, y), arrowstyle="-", color="#555555", linewidth=0.9))
        ends[chain] = previous
        label = "encoder" if chain == "enc" else "decoder"
        ax.text(-2.2, y + 0.42, label, ha="left", va="center", fontsize=9, fontweight="bold")
    # The encoder's output (the memory GA blocks attend to, and one input of the head).
    memory = (len(enc) - 0.3 if enc else -0.6, rows["enc"])
    ax.add_patch(Circle(memory, 0.07, color="#333333", zorder=4))
    ax.text(memory[0] + 0.12, memory[1] + 0.16, "encoder output", fontsize=7.5, color="#333333")
    head_x = columns + 0.35
    ax.add_patch(FancyArrowPatch(ends["dec"], (head_x, rows["dec"]), arrowstyle="-|>", mutation_scale=9, color="#555555"))
    ax.add_patch(FancyArrowPatch(memory, (head_x, rows["dec"] + 0.12), arrowstyle="-|>", mutation_scale=9,
                                 color="#555555", connectionstyle="arc3,rad=-0.15", shrinkA=4))
    ax.text(head_x + 0.1, rows["dec"], "task\nhead", ha="left", va="center", fontsize=9)
    guided = [i for i, name in enumerate(dec) if name in ("guided_att", "guided_att_64")]
    if guided:  # a bus between the rows carries the encoder output down to every GA block
        bus_y = (rows["enc"] + rows["dec"]) / 2 - 0.05
        colour = op_colour("guided_att")
        ax.plot([memory[0], memory[0]], [memory[1] - 0.07, bus_y], color=colour, linewidth=1.0, linestyle="--")
        ax.plot([min(guided[0], memory[0]), max(guided[-1], memory[0])], [bus_y, bus_y], color=colour, linewidth=1.0,
                linestyle="--")
        for i in guided:
            ax.add_patch(FancyArrowPatch((i, bus_y), (i, rows["dec"] + 0.27), arrowstyle="-|>", mutation_scale=8,
                                         color=colour, linewidth=1.0, shrinkA=0, shrinkB=0))
        ax.text(min(guided[0], memory[0]), bus_y + 0.06, "encoder output to guided attention (keys / values)",
                fontsize=7.5, color="#9A6A00", va="bottom")
    if any(m is not None for m in probs.values()):
        ax.text(-2.2, -0.3, "under each block: the probability the search gave its op", fontsize=7.5, color="#555555")
    used = list(dict.fromkeys([*enc, *dec]))
    ax.legend(handles=[Patch(facecolor=op_colour(n), edgecolor="#333333", label=op_long_name(n)) for n in used],
              loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=max(len(used), 1), fontsize=8, frameon=False)
    fig.suptitle(title or "architecture", fontsize=11)
    return fig


def _chosen_probability(matrix: np.ndarray | None, names: list[str], block: int, name: str) -> float | None:
    if matrix is None or block >= matrix.shape[0] or name not in names:
        return None
    return float(matrix[block, names.index(name)])


__all__ = [
    "arch_diagram",
    "arch_heatmaps",
    "blocks",
    "history_epochs",
    "normalised_entropy",
    "pool",
    "prob_matrix",
    "search_dynamics",
    "select_epochs",
]
