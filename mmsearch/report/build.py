"""Build an experiment's report from what is in storage: PNG figures, architecture files and
``report.html``, written (atomically) to ``<experiment>/report/`` or to ``out``.

:func:`build_report` works on a finished or a running experiment, local or on S3, and reads only
files: Tune's per-trial results, the files trials mirrored to storage and the mmsearch state
(:mod:`.collect`). It never imports Ray. A figure that cannot be drawn (unexpected data) is
listed on the page with the reason instead of failing the whole report.

Written next to ``report.html``:

* ``learning_curves.png``: the experiment metric per trial vs epoch, ASHA rungs, stop reasons;
* search experiments: ``arch_heatmap.png`` (the best trial's block x op probabilities at
  selected epochs), ``search_dynamics.png`` (entropy of every trial, the best trial's op counts),
  ``best_arch.png`` (the best architecture as a block diagram); ``best_arch.json`` (the best
  trial's best architecture spec, with its ``source``) and ``final_arch.json`` (a byte copy of
  its latest checkpoint's ``arch.json``);
* every experiment: ``best_trial.json`` (the same keys as the jobs' ``<experiment>/best_trial.json``,
  as of now: id, config, metric value and epoch, every ``val_*`` metric of that epoch, checkpoint);
* FuseMix experiments: ``recall_curves.png`` (the best trial's validation R@1/5/10 both ways)
  and ``loss_temperature.png`` (loss and learned temperature of every trial);
* when the experiment holds retraining results, ``searched_vs_retrained.png``.

Searched vs retrained metrics are read from ``<experiment>/searched_vs_retrained.json``:
``{"searched": {"val_metric": ..., ...}, "retrained": {"val_metric": ..., ...}}`` (metric name ->
value; keys present on either side are shown). Without that file, a ``train_result.json`` of
``mmsearch.recipes.train_derived`` in a non-trial subdirectory of the experiment is compared
with the best search trial at its best epoch.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any, Callable

from mmsearch.storage import StorageLocation, read_bytes, write_bytes
from mmsearch.report import plots_arch, plots_curves, plots_shortlist
from mmsearch.report import tune_files as tf
from mmsearch.report.collect import ExperimentData, TrialData, collect_experiment, open_location
from mmsearch.report.html import FigureFile, ReportExtras, render_html
from mmsearch.report.style import op_label, png_bytes

log = logging.getLogger(__name__)

REPORT_DIR = "report"
REPORT_FILE = "report.html"
COMPARISON_FILE = "searched_vs_retrained.json"
SHORTLIST_FILE = "shortlist.json"  # written by mmsearch.orchestration.jobs.shortlist
DIAGNOSTICS_FILE = "search_diagnostics.json"  # likewise
_NOT_TRIAL_DIRS = {"mmsearch_state", REPORT_DIR}


def build_report(
    location_or_uri: StorageLocation | str,
    out: StorageLocation | str | Path | None = None,
    *,
    endpoint_url: str | None = None,
) -> Path | str:
    """Rebuild the report of the experiment at ``location_or_uri`` (a directory or ``s3://`` URI).

    ``out``: where to write (default ``<experiment>/report``, in the same storage). Returns the
    report's ``report.html`` as a ``Path`` (local) or an ``s3://`` URI string.
    """
    data = collect_experiment(location_or_uri, endpoint_url)
    target = data.location.child(REPORT_DIR) if out is None else open_location(str(out), endpoint_url)
    figures: list[FigureFile] = []
    problems: list[str] = []
    files: list[tuple[str, str]] = []
    best = data.best_trial

    def draw(name: str, title: str, caption: str, make: Callable[[], Any]) -> None:
        try:
            figures.append(FigureFile(name, title, caption, png_bytes(make())))
        except Exception as exc:  # one odd figure must not cost the whole report
            log.warning("report %s: could not draw %s", data.location.uri, name, exc_info=True)
            problems.append(f"{name}: {type(exc).__name__}: {exc}")

    draw("learning_curves.png", "Learning curves", _curves_caption(data), lambda: plots_curves.learning_curves(data))
    if best is not None:
        _write_json(target.child("best_trial.json"), best_trial_record(data, best))
        files.append(("best_trial.json", "the best trial: id, config, metric and every val_* metric at its best epoch, "
                                         "checkpoint URI"))
    best_arch = None
    if data.kind == "search" and best is not None and best.arch_history:
        best_arch = _search_outputs(data, best, target, draw, files)
    if data.kind == "fusemix" and best is not None:
        draw("recall_curves.png", "Retrieval recall of the best trial",
             f"Validation recall@1/5/10 (%) per epoch of trial {best.trial_id}, image→text (left) and text→image (right).",
             lambda: plots_curves.recall_curves(best))
        draw("loss_temperature.png", "Loss and temperature",
             "Training InfoNCE loss and the learned softmax temperature per epoch, one line per trial (best trial bold).",
             lambda: plots_curves.loss_and_temperature(data))
    comparison = _comparison_rows(data)
    comparable = [r for r in comparison if r["searched"] is not None and r["retrained"] is not None]
    if comparable:
        draw("searched_vs_retrained.png", "Searched vs retrained",
             "The best architecture's metrics measured on both sides: with the supernet's shared weights (searched) and "
             "after training the derived network from scratch (retrained); the table above lists every recorded metric.",
             lambda: plots_curves.searched_vs_retrained(comparable, plots_curves.experiment_task(data)))

    diagnostics = tf.read_json(data.location.child(DIAGNOSTICS_FILE))
    agreement = diagnostics.get("agreement") if isinstance(diagnostics, dict) else None
    if isinstance(agreement, dict) and _finite(agreement.get("mean")) is not None:
        files.append((f"../{DIAGNOSTICS_FILE}", f"the searches agree on {agreement['mean']:.2f} of the blocks (chance "
                                                 f"{agreement['chance']:.2f}); per-block entropy of each search's op probabilities"))
    shortlist = tf.read_json(data.location.child(SHORTLIST_FILE))
    if isinstance(shortlist, dict) and shortlist.get("rows"):
        draw("shortlist.png", "Shortlist: retrained under ASHA", plots_shortlist.shortlist_caption(shortlist),
             lambda: plots_shortlist.shortlist_figure(shortlist))
        files.append((f"../{SHORTLIST_FILE}", "the shortlist: candidates, ASHA ladder, winner on val and its one test evaluation"))

    for figure in figures:  # images first: the page never links to a file that is not there yet
        write_bytes(target.child(figure.name), figure.png)
    extras = ReportExtras(figures=figures, files=files, best_arch=best_arch, comparison=comparison, problems=problems)
    write_bytes(target.child(REPORT_FILE), render_html(data, extras).encode("utf-8"))
    page = target.child(REPORT_FILE)
    return page.uri if page.is_s3 else Path(page.uri)


def _curves_caption(data: ExperimentData) -> str:
    rungs = ", ".join(f"{r:g}" for r in data.rungs)
    ladder = f"Dashed lines: ASHA rungs at epochs {rungs}; dotted: max_t = {data.max_t}. " if data.rungs else ""
    return (
        f"{data.metric} of every trial per epoch; the best trial is drawn bold. {ladder}Each curve ends in a marker "
        "for how the trial ended (completed, stopped by ASHA, errored, still running). Right: trials that reached "
        "each rung."
    )


def _search_outputs(
    data: ExperimentData, best: TrialData, target: StorageLocation, draw: Callable[..., None], files: list[tuple[str, str]]
) -> str | None:
    """Figures and architecture files of the best search trial; returns its architecture string."""
    history = best.arch_history or {}
    epochs = plots_arch.history_epochs(history)
    warmup = _warmup_epochs(data, best)
    spec, source = best_arch_spec(best)
    best_epoch = spec.get("epoch") if isinstance(spec, dict) and isinstance(spec.get("epoch"), int) else best.best_epoch
    notes = {e: "warm-up" for e in epochs if e <= warmup}
    if best_epoch in epochs:
        notes[best_epoch] = "best"
    shown = plots_arch.select_epochs(epochs, always=[best_epoch] if best_epoch else [])
    draw("arch_heatmap.png", "Architecture weights of the best trial",
         f"Trial {best.trial_id}: probability of every candidate op (rows) in every block (columns) at epochs "
         f"{', '.join(map(str, shown))} of {len(epochs)}, encoder left, decoder right; the chosen op of each block is outlined.",
         lambda: plots_arch.arch_heatmaps(history, epochs=shown, notes=notes,
                                          title=f"architecture weights per block: trial {best.trial_id}"))
    draw("search_dynamics.png", "Search dynamics",
         "Left: normalised entropy of the block distributions (1 = uniform, 0 = every block decided) per epoch, one line "
         "per trial (warm-up shaded). Middle and right: how many blocks of the best trial's derived architecture use each op.",
         lambda: plots_arch.search_dynamics(data.trials, best, warmup))
    if spec is None:
        return None
    at_epoch = next((row.get(data.metric) for row in best.history if row.get("epoch") == best_epoch), None)
    value = f", {data.metric} = {at_epoch:.4g}" if isinstance(at_epoch, (int, float)) else ""
    title = f"best architecture: trial {best.trial_id}, epoch {best_epoch}{value}"
    draw("best_arch.png", "Best architecture",
         "The best trial's architecture at its best epoch: encoder blocks over the text tokens (top), decoder blocks over "
         "the image regions (bottom); under each block the probability the search gave the chosen op.",
         lambda: plots_arch.arch_diagram(spec, title=title))
    _write_json(target.child("best_arch.json"), {**spec, "source": f"{source} (trial {best.trial_id})"})
    files.append(("best_arch.json", f"the best trial's best architecture spec (from {source})"))
    final = _final_arch(best)
    if final is not None:
        write_bytes(target.child("final_arch.json"), final)
        files.append(("final_arch.json", "a copy of the best trial's latest checkpoint's arch.json (its last epoch)"))
    return arch_string(spec)


def best_trial_record(data: ExperimentData, best: TrialData) -> dict[str, Any]:
    """The best trial as the jobs record it in ``<experiment>/best_trial.json`` (same keys), as of now."""
    row = next((r for r in best.history if r.get("epoch") == best.best_epoch), {})
    return {
        "experiment": data.location.uri,
        "trial_id": best.trial_id,
        "config": best.config,
        "metric": data.metric,
        "mode": data.mode,
        "value": best.best_metric,
        "epoch": best.best_epoch,
        "stop_reason": best.stop_reason,
        "searched": {k: float(v) for k, v in row.items() if k.startswith("val_") and _finite(v) is not None},
        "checkpoint": best_epoch_checkpoint(data, best),
        "latest_checkpoint": best.checkpoint,
        "trial_dir": best.location.uri if best.location else None,
    }


def best_epoch_checkpoint(data: ExperimentData, trial: TrialData) -> str | None:
    """The URI of the checkpoint of the trial's best epoch (its ``mmsearch_checkpoint.json`` says the
    epoch; without one, the latest checkpoint when the best epoch is the last); None if not kept."""
    for uri in reversed(trial.checkpoints):
        raw = read_bytes(dataclasses.replace(data.location, uri=uri).child("mmsearch_checkpoint.json"), missing_ok=True)
        try:
            epoch = json.loads(raw).get("epoch") if raw else None
        except (ValueError, AttributeError):
            epoch = None
        if epoch == trial.best_epoch and epoch is not None:
            return uri
    return trial.checkpoint if trial.best_epoch is not None and trial.best_epoch == trial.last_epoch else None


def _write_json(location: StorageLocation, data: Any) -> None:
    write_bytes(location, (json.dumps(data, indent=2, default=str) + "\n").encode())


def best_arch_spec(trial: TrialData) -> tuple[dict[str, Any] | None, str]:
    """The trial's best architecture: its ``best_arch.json``, else its latest checkpoint's, else
    the recorded architecture at its best epoch. Returns (spec dict, where it came from)."""
    candidates = []
    if trial.location is not None:
        candidates.append(trial.location.child("best_arch.json"))
    checkpoint = _checkpoint(trial)
    if checkpoint is not None:
        candidates.append(checkpoint.child("best_arch.json"))
    for location in candidates:
        spec = _read_spec(location)[1]
        if spec is not None:
            return spec, location.uri
    history = trial.arch_history or {}
    if trial.best_epoch is not None and f"epoch{trial.best_epoch}" in history:
        return dict(history[f"epoch{trial.best_epoch}"]), f"arch_history.json epoch{trial.best_epoch}"
    return None, "none"


def _read_spec(location: StorageLocation) -> tuple[bytes | None, dict[str, Any] | None]:
    """(bytes, parsed) of an architecture spec file; (None, None) when missing or not a spec."""
    raw = read_bytes(location, missing_ok=True)
    try:
        spec = json.loads(raw) if raw is not None else None
    except ValueError:
        return None, None
    return (raw, spec) if isinstance(spec, dict) and "enc" in spec and "dec" in spec else (None, None)


def _checkpoint(trial: TrialData) -> StorageLocation | None:
    """The trial's latest checkpoint directory (a child of its trial directory)."""
    if trial.checkpoint is None or trial.location is None:
        return None
    return trial.location.child(trial.checkpoint.rstrip("/").rsplit("/", 1)[-1])


def _final_arch(trial: TrialData) -> bytes | None:
    """The bytes of the latest checkpoint's ``arch.json`` (copied as they are)."""
    checkpoint = _checkpoint(trial)
    return _read_spec(checkpoint.child("arch.json"))[0] if checkpoint is not None else None


def arch_string(spec: dict[str, Any]) -> str:
    """``SA FFN SA | RSA GA FFN``: encoder blocks, then decoder blocks; a fusion spec lists its
    blocks as ``T:SA I:RSA concat J:JRSA`` (stream letter, op)."""
    if isinstance(spec.get("blocks"), list):
        return " ".join(op_label(f"{b['stream']}:{b['op']}") if b.get("stream") else str(b.get("op")) for b in spec["blocks"])
    return " | ".join(" ".join(op_label(name) for name in plots_arch.blocks(spec, chain)) for chain in ("enc", "dec"))


def _warmup_epochs(data: ExperimentData, trial: TrialData) -> int:
    if isinstance(trial.config.get("search.warmup_epochs"), int):
        return int(trial.config["search.warmup_epochs"])
    base = data.spec.get("base_config")
    search = base.get("search") if isinstance(base, dict) else None
    value = search.get("warmup_epochs") if isinstance(search, dict) else None
    if isinstance(value, int):
        return value
    return sum(1 for row in trial.history if row.get("warmup") == 1)


def _comparison_rows(data: ExperimentData) -> list[dict[str, Any]]:
    """Searched vs retrained metrics (see the module docstring), or [] when there are none."""
    recorded = tf.read_json(data.location.child(COMPARISON_FILE))
    if isinstance(recorded, dict) and isinstance(recorded.get("searched"), dict) and isinstance(recorded.get("retrained"), dict):
        searched, retrained = recorded["searched"], recorded["retrained"]
        keys = [k for k in dict.fromkeys([*searched, *retrained]) if not k.endswith("_count")]  # sample counts
        rows = [{"metric": k, "searched": _finite(searched.get(k)), "retrained": _finite(retrained.get(k))} for k in keys]
        both = [r for r in rows if r["searched"] is not None and r["retrained"] is not None]
        return both + [r for r in rows if r not in both]  # comparable metrics first
    best = data.best_trial
    if best is None:
        return []
    for name, is_dir in sorted(tf.list_dir(data.location).items()):
        if not is_dir or name in _NOT_TRIAL_DIRS or tf.trial_id_from_dirname(name):
            continue
        result = tf.read_json(data.location.child(name, "train_result.json"))
        if isinstance(result, dict) and "best_val_metric" in result:
            row = next((r for r in best.history if r.get("epoch") == best.best_epoch), {})
            return [{"metric": str(result.get("metric", "val_metric")), "searched": _finite(row.get("val_metric")),
                     "retrained": _finite(result.get("best_val_metric"))}]
    return []


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


__all__ = ["COMPARISON_FILE", "REPORT_DIR", "REPORT_FILE", "arch_string", "best_arch_spec", "best_trial_record", "build_report"]
