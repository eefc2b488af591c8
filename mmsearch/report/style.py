"""One look for every report figure: op colours, trial colours, stop-reason markers, axis labels.

Op colours are the Okabe-Ito colour-blind-safe palette and are the same in every figure (heat
maps' tick labels, op-count bars, the architecture diagram). Figures are built on
``matplotlib.figure.Figure`` directly (no ``pyplot``, so no global figure state and no GUI
backend); PNG output goes through Agg.
"""
from __future__ import annotations

import io
import re
from typing import Any

from matplotlib.figure import Figure

# Canonical op name -> (short label, long name, colour).
OPS: dict[str, tuple[str, str, str]] = {
    "self_att": ("SA", "self-attention", "#0072B2"),
    "guided_att": ("GA", "guided attention", "#E69F00"),
    "rel_self_att": ("RSA", "relation self-attention", "#009E73"),
    "feed_forward": ("FFN", "feed-forward", "#CC79A7"),
    # fusion blocks (issue 9)
    "t2r_att": ("T2R", "text-to-region attention", "#D55E00"),
    "joint_rel_self_att": ("JRSA", "joint self-attention + box geometry", "#56B4E9"),
    "co_att": ("CO", "co-attention", "#882255"),
    "early_sum": ("ES", "gated early summation", "#999933"),
}
STREAM_LETTERS = {"text": "T", "image": "I", "both": "B", "joint": "J"}  # fusion-search candidates "stream:op"
_EXTRA_OP_COLOURS = ("#56B4E9", "#D55E00", "#F0E442", "#999999")
_MMNAS_SUFFIX = "_64"  # MMnas's op names (self_att_64) are the same ops

# Stop reason -> (end-of-curve marker, colour of the marker edge, legend text).
STOP_MARKERS: dict[str, tuple[str, str, str]] = {
    "completed": ("o", "#222222", "completed (max_t)"),
    "stopped_by_asha": ("X", "#C0392B", "stopped by ASHA"),
    "stopped": ("s", "#7F8C8D", "stopped early"),
    "errored": ("*", "#000000", "errored"),
    "unfinished": (">", "#2E86C1", "running / unfinished"),
}

TRIAL_CMAPS = ("tab10", "tab20")  # saturated colours up to 10 trials, then 20 before they repeat
DPI = 110
FONT_SIZE = 9.0


def canonical_op(name: str) -> str:
    if ":" in name:  # a fusion-search candidate "stream:op": coloured like its op
        name = name.split(":", 1)[1]
    return name[: -len(_MMNAS_SUFFIX)] if name.endswith(_MMNAS_SUFFIX) else name


def op_label(name: str) -> str:
    label = OPS.get(canonical_op(name), (canonical_op(name),))[0]
    stream = name.split(":", 1)[0] if ":" in name else None
    return f"{STREAM_LETTERS.get(stream, stream)}:{label}" if stream else label


def op_long_name(name: str) -> str:
    op = OPS.get(canonical_op(name))
    stream = f"{name.split(':', 1)[0]}: " if ":" in name else ""
    return f"{stream}{op[0]} ({op[1]})" if op else name


def op_colour(name: str) -> str:
    name = canonical_op(name)
    if name in OPS:
        return OPS[name][2]
    return _EXTRA_OP_COLOURS[sum(map(ord, name)) % len(_EXTRA_OP_COLOURS)]  # stable per name


def trial_colours(trial_ids: list[str]) -> dict[str, Any]:
    """A distinct colour per trial (20 before they repeat), stable for a given list of ids."""
    from matplotlib import colormaps

    cmap = colormaps[TRIAL_CMAPS[0] if len(trial_ids) <= 10 else TRIAL_CMAPS[1]]
    return {trial_id: cmap(i % cmap.N) for i, trial_id in enumerate(sorted(trial_ids))}


_UNITS = (  # (pattern searched in the key, unit), first match wins
    (re.compile(r"_per_s$"), "per second"),
    (re.compile(r"_s$"), "seconds"),
    (re.compile(r"entropy_norm"), "1 = uniform"),
    (re.compile(r"entropy"), "nats"),
    (re.compile(r"rsum$"), "sum of recalls, %"),
    (re.compile(r"(i2t|t2i)_(r\d+|mean)$"), "%"),
    (re.compile(r"acc"), "%"),
)



def primary_labels(task: str | None) -> Any:
    """The task's :class:`mmsearch.tasks.Labels` (its primary metric's name and unit), None if unknown."""
    if not task:
        return None
    from mmsearch.tasks import TASKS  # the task registry (torch): only where a task is labelled

    return TASKS.get(task).labels if task in TASKS else None


def trial_label(trial_id: str, config: dict[str, Any], best: bool = False) -> str:
    """A legend entry: the trial id and its sampled parameters (``a1_00001: darts, seed 1, arch_lr 0.052``)."""
    parts = []
    for key, value in config.items():
        name = key.rsplit(".", 1)[-1]
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, float):
            parts.append(f"{name} {value:.3g}")
        else:
            parts.append(f"{name} {value}")
    return trial_id + (": " + ", ".join(parts) if parts else "") + (" (best)" if best else "")


def metric_label(key: str, task: str | None = None) -> str:
    """An axis label with the unit: ``val_metric`` of a VQA search -> ``validation VQA accuracy (%)``."""
    labels = primary_labels(task) if key in ("val_metric", "best_val_metric") else None
    if labels is not None:
        return f"validation {labels.metric} ({labels.unit})"
    for pattern, unit in _UNITS:
        if pattern.search(key):
            return f"{key} ({unit})"
    return key


def new_figure(width: float, height: float) -> Figure:
    """A figure with the report's font size and a white background (readable on any page)."""
    fig = Figure(figsize=(width, height), dpi=DPI, facecolor="white", layout="constrained")
    return fig


def style_axes(ax: Any) -> None:
    ax.grid(True, color="#E5E5E5", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=FONT_SIZE)
    ax.xaxis.label.set_size(FONT_SIZE + 0.5)
    ax.yaxis.label.set_size(FONT_SIZE + 0.5)
    ax.title.set_size(FONT_SIZE + 1.5)


def png_bytes(fig: Figure) -> bytes:
    """Render to PNG (Agg) and release the figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    fig.clear()
    return buffer.getvalue()


__all__ = [
    "trial_label",
    "OPS",
    "STOP_MARKERS",
    "canonical_op",
    "metric_label",
    "new_figure",
    "op_colour",
    "op_label",
    "op_long_name",
    "png_bytes",
    "primary_labels",
    "style_axes",
    "trial_colours",
]
