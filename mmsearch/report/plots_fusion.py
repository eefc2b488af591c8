"""The architecture diagram of a fusion spec (``{"blocks": [...]}``): two streams, joint segments
and cross arrows.

Rows: the text stream on top, the regions below, the joint stream as one tall box spanning both.
Per block: a per-stream op is a box on its row; ``t2r_att`` (text reads regions) and
``guided_att`` (regions read text) get an orange arrow from the other row; two-stream ops
(``co_att``, ``early_sum``) get a box on both rows and arrows both ways; ``concat`` / ``split`` /
``pool`` are thin labelled bars. Under a block, the probability the search gave its candidate
(specs written by the fusion search).
"""
from __future__ import annotations

from typing import Any, Mapping

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

from mmsearch.report.style import new_figure, op_colour, op_label, op_long_name

ROWS = {"text": 2.0, "image": 0.5}
CROSS = "#D55E00"


def _box(ax: Any, x: float, y0: float, y1: float, name: str) -> None:
    ax.add_patch(FancyBboxPatch((x - 0.36, y0 - 0.24), 0.72, y1 - y0 + 0.48, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=op_colour(name), edgecolor="#333333", linewidth=0.8, zorder=3))
    ax.text(x, (y0 + y1) / 2, op_label(name), ha="center", va="center", color="white", fontsize=8.5, fontweight="bold", zorder=4)


def _arrow(ax: Any, start: tuple[float, float], end: tuple[float, float], colour: str = "#555555", style: str = "-|>") -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=9, color=colour, linewidth=0.9, zorder=2))


def _searched_probabilities(spec: Mapping[str, Any]) -> list[float | None]:
    """Per op block, the probability of its chosen candidate (fusion-search specs), else None."""
    stages, probs, pools = spec.get("stages"), spec.get("probs"), spec.get("op_pools")
    if not (isinstance(stages, Mapping) and isinstance(probs, Mapping) and isinstance(pools, Mapping)):
        return []
    out: list[float | None] = []
    for stage in ("enc", "dec"):
        for row, name in zip(probs.get(stage, []), stages.get(stage, [])):
            pool = list(pools.get(stage, []))
            out.append(float(row[pool.index(name)]) if name in pool else None)
    return out


def fusion_diagram(spec: Mapping[str, Any], *, title: str = "") -> Figure:
    blocks = [b for b in spec.get("blocks", []) if isinstance(b, Mapping)]
    columns = max(len(blocks), 1)
    fig = new_figure(min(24.0, 3.4 + 0.9 * columns), 3.9)
    ax = fig.subplots()
    ax.set_xlim(-2.3, columns + 1.3)
    ax.set_ylim(-0.45, 2.8)
    ax.set_axis_off()
    for stream, y in ROWS.items():
        ax.text(-2.2, y, "text tokens" if stream == "text" else "regions\n+ boxes", ha="left", va="center", fontsize=9)
    probabilities = iter(_searched_probabilities(spec))
    ends = {"text": -1.0, "image": -1.0}  # x where each row's last arrow ends
    used: list[str] = []
    for x, block in enumerate(blocks):
        stream, op = block.get("stream"), str(block.get("op"))
        if stream is None:  # bookkeeping: a thin bar across both rows
            ax.plot([x, x], [ROWS["image"] - 0.3, ROWS["text"] + 0.3], color="#333333", linewidth=2.2)
            ax.text(x, ROWS["text"] + 0.45, op, ha="center", fontsize=8, fontweight="bold")
            for row, y in ROWS.items():
                _arrow(ax, (ends[row] + 0.38, y), (x - 0.05, y))
                ends[row] = x - 0.33
            continue
        used.append(op)
        rows = ["text", "image"] if stream in ("both", "joint") else [stream]
        if stream == "joint":
            _box(ax, x, ROWS["image"], ROWS["text"], op)
        else:
            for row in rows:
                _box(ax, x, ROWS[row], ROWS[row], op)
        for row in rows:
            _arrow(ax, (ends[row] + 0.38, ROWS[row]), (x - 0.38, ROWS[row]))
            ends[row] = x
        if stream == "both" or op in ("t2r_att", "guided_att"):  # cross-modal arrows between the rows
            up, down = (ROWS["image"] + 0.26, ROWS["text"] - 0.26), (ROWS["text"] - 0.26, ROWS["image"] + 0.26)
            if stream == "both":
                _arrow(ax, (x - 0.15, up[0]), (x - 0.15, up[1]), CROSS)
                _arrow(ax, (x + 0.15, down[0]), (x + 0.15, down[1]), CROSS)
            elif op == "t2r_att":
                _arrow(ax, (x - 0.45, up[0]), (x, up[1]), CROSS)
            else:
                _arrow(ax, (x - 0.45, down[0]), (x, down[1]), CROSS)
        p = next(probabilities, None)
        if p is not None:
            ax.text(x, ROWS["image"] - 0.42, f"{p:.2f}", ha="center", fontsize=7, color="#555555")
    head_x = columns + 0.3
    for row, y in ROWS.items():
        _arrow(ax, (ends[row] + 0.38, y), (head_x, (ROWS["text"] + ROWS["image"]) / 2))
    ax.text(head_x + 0.08, (ROWS["text"] + ROWS["image"]) / 2, "task\nhead", ha="left", va="center", fontsize=9)
    notes = "orange arrows: one stream reads the other"
    if _searched_probabilities(spec):
        notes += "; under each block: the probability the search gave it"
    ax.text(-2.2, -0.4, notes, fontsize=7.5, color="#555555")
    names = list(dict.fromkeys(used))
    ax.legend(handles=[Patch(facecolor=op_colour(n), edgecolor="#333333", label=op_long_name(n)) for n in names],
              loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=max(min(len(names), 5), 1), fontsize=8, frameon=False)
    pattern = spec.get("pattern")
    fig.suptitle(title or f"architecture{f' ({pattern})' if pattern else ''}", fontsize=11)
    return fig


__all__ = ["fusion_diagram"]
