"""The static ``report.html``: one self-contained page (inline CSS, figures embedded as PNG data
URIs and linked to their files), readable offline, from a bucket, or as an e-mail attachment.

No JavaScript and no external assets. Every value shown is HTML-escaped.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import html
import math
from typing import Any, Sequence

from mmsearch.report.collect import STOP_REASONS, ExperimentData, TrialData
from mmsearch.report.style import STOP_MARKERS


@dataclasses.dataclass(frozen=True)
class FigureFile:
    """One rendered figure: its file name next to the report, heading, caption and PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes


@dataclasses.dataclass(frozen=True)
class ReportExtras:
    """What the page shows besides the experiment's trials."""

    figures: Sequence[FigureFile] = ()
    files: Sequence[tuple[str, str]] = ()  # (file name next to the report, what it is)
    best_arch: str | None = None  # compact architecture string of the best trial
    comparison: Sequence[dict[str, Any]] = ()  # searched vs retrained rows
    problems: Sequence[str] = ()  # figures that could not be drawn, and why


_BADGE_COLOURS = {
    "completed": "#1E8449",
    "stopped_by_asha": "#C0392B",
    "stopped": "#7F8C8D",
    "errored": "#000000",
    "unfinished": "#2E86C1",
}

_CSS = """
body{font:14px/1.45 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#222;margin:0;background:#FAFAFA}
main{max-width:1280px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 10px;border-bottom:1px solid #DDD;padding-bottom:4px}
.sub{color:#666;margin:0 0 18px}.sub code{color:#444}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#FFF;border:1px solid #E1E1E1;border-radius:6px;padding:10px 14px;min-width:170px}
.card .k{color:#777;font-size:12px;text-transform:uppercase;letter-spacing:.04em}.card .v{font-size:18px;font-weight:600}
table{border-collapse:collapse;background:#FFF;font-size:13px;width:100%}
th,td{border:1px solid #E3E3E3;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#F2F4F4;position:sticky;top:0}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#FEF9E7}
.badge{display:inline-block;color:#FFF;border-radius:10px;padding:0 8px;font-size:12px;white-space:nowrap}
figure{margin:14px 0 26px;background:#FFF;border:1px solid #E1E1E1;border-radius:6px;padding:12px}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{color:#444;margin-top:8px}figcaption b{color:#222}
code,.mono{font-family:SFMono-Regular,Consolas,Menlo,monospace;font-size:12.5px}
.arch{background:#FFF;border:1px solid #E1E1E1;padding:6px 10px;border-radius:4px;overflow-x:auto;white-space:nowrap}
.warn{background:#FDEDEC;border:1px solid #F5B7B1;padding:8px 12px;border-radius:4px}
ul.files li{margin:2px 0}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–"
    if isinstance(value, float) and not math.isfinite(value):
        return "–"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _badge(reason: str) -> str:
    text = STOP_MARKERS.get(reason, ("", "", reason))[2]
    return f'<span class="badge" style="background:{_BADGE_COLOURS.get(reason, "#555")}">{_e(text)}</span>'


def _config_keys(trials: Sequence[TrialData]) -> list[str]:
    keys: dict[str, None] = {}
    for trial in trials:
        keys.update(dict.fromkeys(trial.config))
    return list(keys)


def _config_value(value: Any) -> str:
    return _num(value) if isinstance(value, float) else _e(value)


def ranked(data: ExperimentData) -> list[TrialData]:
    """Trials best first by their best metric; unscored trials last, by id."""
    sign = -1.0 if data.mode == "max" else 1.0
    return sorted(data.trials, key=lambda t: (t.best_metric is None, sign * (t.best_metric or 0.0), t.trial_id))


def render_html(data: ExperimentData, extras: ReportExtras, generated: dt.datetime | None = None) -> str:
    generated = generated or dt.datetime.now(dt.timezone.utc)
    unfinished = data.count("unfinished")
    if not data.trials:
        state = "no trial has started yet"
    elif data.finished:
        state = "finished"
    else:
        state = f"running or interrupted: {unfinished} of {len(data.trials)} trials unfinished"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(data.name)}: mmsearch experiment report</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>Experiment <span class=mono>{_e(data.name)}</span></h1>",
        f'<p class="sub"><code>{_e(data.location.uri)}</code> · {_e(state)} · report built '
        f'{_e(generated.strftime("%Y-%m-%d %H:%M UTC"))}</p>',
        _overview(data),
        _best_section(data, extras),
    ]
    if extras.problems:
        items = "".join(f"<li>{_e(p)}</li>" for p in extras.problems)
        parts.append(f'<div class="warn"><b>Not everything could be drawn:</b><ul>{items}</ul></div>')
    if extras.comparison:
        parts.append(_comparison_table(extras.comparison))
    if extras.figures:
        parts.append("<h2>Figures</h2>")
        parts.extend(_figure(fig) for fig in extras.figures)
    parts.append(_trials_table(data))
    errored = [t for t in data.trials if t.error]
    if errored:
        items = "".join(f"<li><b class=mono>{_e(t.trial_id)}</b>: <code>{_e(t.error)}</code></li>" for t in errored)
        parts.append(f"<h2>Errors</h2><ul>{items}</ul>")
    if extras.files:
        items = "".join(f'<li><a href="{_e(name)}">{_e(name)}</a>: {_e(what)}</li>' for name, what in extras.files)
        parts.append(f'<h2>Files next to this report</h2><ul class="files">{items}</ul>')
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def _overview(data: ExperimentData) -> str:
    scheduler = data.spec.get("scheduler") or {}
    if data.rungs:
        ladder = " → ".join(f"{r:g}" for r in data.rungs) + f" → {data.max_t} (max_t)"
        sched = f"ASHA, rf {_num(scheduler.get('reduction_factor'))}"
    else:
        ladder, sched = f"every trial to {data.max_t}", "FIFO"
    counts = ", ".join(f"{data.count(r)} {STOP_MARKERS[r][2]}" for r in STOP_REASONS if data.count(r))
    best = data.best_trial
    cards = [
        ("metric", f"{data.metric} ({data.mode})"),
        ("best", f"{_num(best.best_metric)} @ epoch {best.best_epoch}" if best else "–"),
        ("trials", f"{len(data.trials)}"),
        ("scheduler", sched),
        ("rungs (epochs)", ladder),
        ("searcher", str(data.spec.get("searcher", "–"))),
        ("trial-epochs run", str(sum(len(t.history) for t in data.trials))),
    ]
    html_cards = "".join(f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div></div>' for k, v in cards)
    return f'<div class="cards">{html_cards}</div><p>{_e(counts or "no trials yet")}</p>'


def _best_section(data: ExperimentData, extras: ReportExtras) -> str:
    best = data.best_trial
    if best is None:
        return "<h2>Best trial</h2><p>No trial has reported the metric yet.</p>"
    config = ", ".join(f"<code>{_e(k)}={_config_value(v)}</code>" for k, v in best.config.items()) or "–"
    rows = [
        ("trial", f"<span class=mono>{_e(best.trial_id)}</span> ({_badge(best.stop_reason)})"),
        (data.metric, f"{_num(best.best_metric)} at epoch {best.best_epoch} (last epoch {best.last_epoch})"),
        ("config", config),
        ("latest checkpoint", f"<code>{_e(best.checkpoint or '–')}</code>"),
    ]
    if extras.best_arch:
        rows.append(("architecture", f'<div class="arch mono">{_e(extras.best_arch)}</div>'))
    tested = {k: v for k, v in best.last.items() if k.startswith("test_") and not k.endswith("_count")}
    if tested:  # recipes evaluate the test split once, at their last epoch, with the model selected on validation
        rows.append(("test split (last epoch)", ", ".join(f"<code>{_e(k)}={_num(v)}</code>" for k, v in tested.items())))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<h2>Best trial</h2><table>{body}</table>"


def _comparison_table(rows: Sequence[dict[str, Any]]) -> str:
    body = "".join(
        f"<tr><td class=mono>{_e(r['metric'])}</td><td class=num>{_num(r.get('searched'))}</td>"
        f"<td class=num>{_num(r.get('retrained'))}</td></tr>"
        for r in rows
    )
    return (
        "<h2>Searched vs retrained</h2><p>The best architecture's metrics with the supernet's weights "
        "(searched) and after training the derived network from scratch (retrained).</p>"
        f"<table><tr><th>metric</th><th>searched</th><th>retrained</th></tr>{body}</table>"
    )


def _figure(fig: FigureFile) -> str:
    data_uri = "data:image/png;base64," + base64.b64encode(fig.png).decode("ascii")
    return (
        f'<figure id="{_e(fig.name)}"><a href="{_e(fig.name)}"><img src="{data_uri}" alt="{_e(fig.title)}"></a>'
        f"<figcaption><b>{_e(fig.title)}.</b> {_e(fig.caption)} "
        f'(<a href="{_e(fig.name)}">{_e(fig.name)}</a>)</figcaption></figure>'
    )


def _trials_table(data: ExperimentData) -> str:
    keys = _config_keys(data.trials)
    show_arch = any("arch" in t.last for t in data.trials)
    best = data.best_trial
    head = ["#", "trial", "stop reason", "rung", "epochs", f"best {data.metric}", "at epoch", f"last {data.metric}"]
    head += keys + (["architecture (last epoch)"] if show_arch else []) + ["trial time (s)"]
    rows = []
    for rank, trial in enumerate(ranked(data), start=1):
        last_value = trial.last.get(data.metric)
        seconds = trial.last.get("time_total_s")
        cells = [
            f"<td class=num>{rank}</td>",
            f"<td class=mono>{_e(trial.trial_id)}</td>",
            f"<td>{_badge(trial.stop_reason)}</td>",
            f"<td class=num>{_num(trial.rung_reached)}</td>",
            f"<td class=num>{_e(trial.last_epoch if trial.last_epoch is not None else '–')} / {data.max_t}</td>",
            f"<td class=num>{_num(trial.best_metric)}</td>",
            f"<td class=num>{_num(trial.best_epoch)}</td>",
            f"<td class=num>{_num(last_value)}</td>",
        ]
        cells += [f"<td class=mono>{_config_value(trial.config.get(k, '–'))}</td>" for k in keys]
        if show_arch:
            cells.append(f"<td class=mono>{_e(trial.last.get('arch', '–'))}</td>")
        cells.append(f"<td class=num>{_num(seconds, 3)}</td>")
        css = ' class="best"' if best is not None and trial.trial_id == best.trial_id else ""
        rows.append(f'<tr{css} id="trial-{_e(trial.trial_id)}">' + "".join(cells) + "</tr>")
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<h2>Trials</h2><table><tr>{header}</tr>{''.join(rows)}</table>"


__all__ = ["FigureFile", "ReportExtras", "ranked", "render_html"]
