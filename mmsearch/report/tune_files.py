"""Read what Ray Tune and mmsearch leave in an experiment directory, without importing Ray.

Everything here reads plain files through the experiment's ``pyarrow`` filesystem (local, NFS or
S3), so a report can be built on a laptop from a bucket, while the experiment is still running,
or after the cluster is gone. Readers are tolerant: a file that is missing, or half written by
a trial that is still running (the last JSON line of ``result.json``), yields what is readable.

Files read (all optional except the experiment spec):

* ``mmsearch_state/experiment_spec.json``: metric, mode, ``max_t`` and ASHA rungs of the experiment;
* ``mmsearch_state/asha_state.json``: which trials ASHA stopped (``stopped_by_asha``);
* ``experiment_state-<timestamp>.json`` (Tune's, newest): each trial's status, config and directory;
* per trial directory: ``result.json`` (one JSON object per report; ``progress.csv`` as a
  fallback), ``error.txt``, ``checkpoint_NNNNNN/`` and the files the trial mirrored there.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from typing import Any

import pyarrow.fs as pafs

from mmsearch.storage import StorageLocation, read_bytes

SPEC_FILE = "mmsearch_state/experiment_spec.json"
ASHA_STATE_FILE = "mmsearch_state/asha_state.json"
SUMMARY_FILE = "experiment_summary.json"
_STATE_PREFIX = "experiment_state-"
_CHECKPOINT = re.compile(r"^checkpoint_(\d+)$")
# Tune's trial directories: <trainable>_<trial id>_<index>_<params>_<date>; trial ids are
# "<5 hex>_<5 digits>" from the variant generator, or 8 hex digits from a searcher (Optuna).
_TRIAL_ID_IN_DIR = re.compile(r"_([0-9a-f]{5}_\d{5}|[0-9a-f]{8})_\d+(?:_|$)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def read_json(location: StorageLocation) -> Any | None:
    """The parsed JSON file, or None when it is missing or not (yet) valid JSON."""
    raw = read_bytes(location, missing_ok=True)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def list_dir(location: StorageLocation) -> dict[str, bool]:
    """Entries directly under ``location``: name -> is a directory (empty when it does not exist)."""
    fs = location.filesystem()
    try:
        infos = fs.get_file_info(pafs.FileSelector(location.fs_path, allow_not_found=True))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {info.base_name: info.type == pafs.FileType.Directory for info in infos}


def read_results(trial_dir: StorageLocation) -> list[dict[str, Any]]:
    """The trial's reports in order: ``result.json`` lines (a torn last line is skipped), else ``progress.csv``."""
    raw = read_bytes(trial_dir.child("result.json"), missing_ok=True)
    rows: list[dict[str, Any]] = []
    if raw is not None:
        for line in raw.decode("utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue  # the line a running trial is writing right now
            if isinstance(row, dict):
                row.pop("config", None)  # the sampled params; the trial record has them once
                rows.append(row)
        return rows
    raw = read_bytes(trial_dir.child("progress.csv"), missing_ok=True)
    if raw is None:
        return rows
    for row in csv.DictReader(io.StringIO(raw.decode("utf-8", errors="replace"))):
        rows.append({key: _csv_value(value) for key, value in row.items() if not key.startswith("config/")})
    return rows


def _csv_value(text: str | None) -> Any:
    if text is None or text == "":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def by_epoch(rows: list[dict[str, Any]], time_attr: str = "epoch") -> list[dict[str, Any]]:
    """One row per epoch, in epoch order; a retried trial's repeated epoch keeps its latest report."""
    latest: dict[int, dict[str, Any]] = {}
    for row in rows:
        epoch = row.get(time_attr)
        if isinstance(epoch, bool) or not isinstance(epoch, (int, float)) or not math.isfinite(epoch):
            continue
        latest[int(epoch)] = row
    return [latest[e] for e in sorted(latest)]


def tune_trial_states(experiment: StorageLocation) -> dict[str, dict[str, Any]]:
    """From Tune's newest ``experiment_state-*.json``: trial id -> {status, config, dirname, error_file}.

    Empty before Tune's first snapshot. Statuses are Tune's (PENDING, RUNNING, PAUSED,
    TERMINATED, ERROR); a driver that died leaves its last snapshot's statuses.
    """
    names = sorted(n for n, is_dir in list_dir(experiment).items() if not is_dir and n.startswith(_STATE_PREFIX))
    for name in reversed(names):  # the newest readable one
        state = read_json(experiment.child(name))
        if isinstance(state, dict) and isinstance(state.get("trial_data"), list):
            return _parse_trial_data(state["trial_data"])
    return {}


def _parse_trial_data(trial_data: list[Any]) -> dict[str, dict[str, Any]]:
    trials: dict[str, dict[str, Any]] = {}
    for entry in trial_data:
        try:
            trial = json.loads(entry[0])
            runtime = json.loads(entry[1]) if len(entry) > 1 and entry[1] else {}
        except (TypeError, ValueError, IndexError):
            continue
        trial_id = trial.get("trial_id")
        if not isinstance(trial_id, str):
            continue
        config = trial.get("config")
        trials[trial_id] = {
            "status": str(trial.get("status", "UNKNOWN")),
            "config": config if isinstance(config, dict) else {},
            "dirname": trial.get("relative_logdir") if isinstance(trial.get("relative_logdir"), str) else None,
            "error_file": runtime.get("error_filename") if isinstance(runtime, dict) else None,
        }
    return trials


def trial_id_from_dirname(dirname: str) -> str | None:
    """``run_search_074fd_00003_3_seed=3_...`` -> ``074fd_00003``; ``fusemix_trial_74d0a4d5_1_...`` -> ``74d0a4d5``."""
    match = _TRIAL_ID_IN_DIR.search(dirname)
    return match.group(1) if match else None


def checkpoint_names(entries: dict[str, bool]) -> list[str]:
    """The ``checkpoint_NNNNNN`` directories among ``entries``, oldest first."""
    found = [(int(m.group(1)), name) for name, is_dir in entries.items() if is_dir and (m := _CHECKPOINT.match(name))]
    return [name for _, name in sorted(found)]


def short_error(text: str | None) -> str | None:
    """The last non-empty line of an error file (``InjectedFailure: injected failure at epoch 2``), no colours."""
    if not text:
        return None
    lines = [line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    return lines[-1][:500] if lines else None


__all__ = [
    "ASHA_STATE_FILE",
    "SPEC_FILE",
    "SUMMARY_FILE",
    "by_epoch",
    "checkpoint_names",
    "list_dir",
    "read_json",
    "read_results",
    "short_error",
    "trial_id_from_dirname",
    "tune_trial_states",
]
