"""Checkpoints a resumed trial can always find, and the manifest that says a checkpoint is whole.

Ray Tune saves its experiment state (which names each trial's latest checkpoint) every few
seconds, while ``CheckpointConfig(num_to_keep)`` deletes superseded checkpoints at once; a
driver killed with ``kill -9`` in between leaves a state that names a deleted checkpoint, and
every resume of that trial then fails ("Could not recover from checkpoint as it does not exist
on storage anymore"). Conversely the state can name an older checkpoint than the newest one
the trial wrote, and the trial would redo finished epochs.

* :func:`write_manifest`: :class:`~.tune_context.TuneContext` adds ``mmsearch_checkpoint.json``
  (epoch, reported metrics, every file's size) to each checkpoint before Tune persists it, so a
  checkpoint half-copied when the driver died is recognised as incomplete.
* :class:`ResumeFromNewestCheckpoint`: a Tune callback that, when a run (re)starts, points every
  unfinished trial at its newest complete checkpoint in storage (complete: its manifest's files
  are all there with their sizes; a checkpoint without a manifest counts if it exists) and
  prints a line whenever that differs from what the saved state named. A trial with no
  checkpoint left restarts from scratch, saying so. The checkpoint index continues after the
  highest existing one, so no later checkpoint overwrites one in storage.
"""
from __future__ import annotations

import json
import logging
import posixpath
import re
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from ray import tune

log = logging.getLogger(__name__)

MANIFEST = "mmsearch_checkpoint.json"
_CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")


def write_manifest(checkpoint_dir: Path, metrics: dict[str, Any]) -> None:
    """Record the epoch, the metrics and every file's size in ``checkpoint_dir`` (before it is persisted)."""
    files = {
        p.relative_to(checkpoint_dir).as_posix(): p.stat().st_size
        for p in sorted(checkpoint_dir.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    plain = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}
    (checkpoint_dir / MANIFEST).write_text(json.dumps({"epoch": metrics.get("epoch"), "metrics": plain, "files": files}, default=str))


def read_manifest(fs: pafs.FileSystem, path: str) -> dict[str, Any] | None:
    try:
        with fs.open_input_stream(posixpath.join(path, MANIFEST)) as stream:
            manifest = json.loads(stream.read())
        return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else None
    except (OSError, ValueError):
        return None


def is_complete(fs: pafs.FileSystem, path: str, manifest: dict[str, Any]) -> bool:
    names = list(manifest["files"])
    infos = fs.get_file_info([posixpath.join(path, name) for name in names]) if names else []
    return all(info.type == pafs.FileType.File and info.size == manifest["files"][name] for name, info in zip(names, infos))


def checkpoint_dirs(fs: pafs.FileSystem, trial_path: str) -> list[tuple[int, str]]:
    """``(index, path)`` of the trial's ``checkpoint_NNNNNN`` directories in storage, by index."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True))
    except OSError:
        return []
    found = []
    for info in infos:
        match = _CHECKPOINT_DIR.match(info.base_name)
        if match and info.type == pafs.FileType.Directory:
            found.append((int(match.group(1)), info.path))
    return sorted(found)


def newest_complete(fs: pafs.FileSystem, trial_path: str) -> tuple[int, str, dict[str, Any] | None] | None:
    """The newest checkpoint that is whole: ``(index, path, manifest)``; None when there is none."""
    for index, path in reversed(checkpoint_dirs(fs, trial_path)):
        manifest = read_manifest(fs, path)
        if manifest is None:
            if fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
                return index, path, None  # written without a manifest (not by TuneContext): trust what exists
            continue
        if is_complete(fs, path, manifest):
            return index, path, manifest
    return None


class ResumeFromNewestCheckpoint(tune.Callback):
    """On the first step of a (resumed) run, point unfinished trials at their newest complete checkpoint."""

    def __init__(self) -> None:
        self._checked = False

    def setup(self, **info: Any) -> None:
        self._checked = False

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self._checked:
            return
        self._checked = True
        for trial in trials:
            if trial.status != "TERMINATED":
                self._settle(trial)

    @staticmethod
    def _settle(trial: Any) -> None:
        from ray.train._internal.session import _TrainingResult  # the type Tune keeps checkpoints in

        manager = trial.run_metadata.checkpoint_manager
        fs, trial_path = trial.storage.storage_filesystem, trial.storage.trial_fs_path
        referenced = manager.latest_checkpoint_result
        named = referenced.checkpoint.path if referenced is not None else None
        existing = checkpoint_dirs(fs, trial_path)
        if named is None and not existing:
            return  # a trial that never checkpointed: starts from scratch, as it should
        newest = newest_complete(fs, trial_path)
        if newest is not None and newest[1] == named:
            return
        if newest is None:
            manager._latest_checkpoint_result = None
            print(f"Trial {trial.trial_id}: no complete checkpoint left in {trial_path} "
                  f"(the saved state named {_name(named)}); it restarts from scratch", flush=True)
        else:
            index, path, manifest = newest
            metrics = dict(referenced.metrics) if referenced is not None else {}
            metrics.update((manifest or {}).get("metrics") or {})
            manager._latest_checkpoint_result = _TrainingResult(
                checkpoint=tune.Checkpoint(path, filesystem=fs), metrics=metrics
            )
            why = "no longer exists" if named is not None and not _exists(fs, named) else "is older"
            epoch = f" (epoch {manifest['epoch']})" if manifest else ""
            print(f"Trial {trial.trial_id}: resuming from {_name(path)}{epoch}, the newest complete checkpoint; "
                  f"the saved experiment state named {_name(named)}, which {why if named else 'was saved before it'}",
                  flush=True)
        manager._checkpoint_results = [r for r in manager._checkpoint_results if _exists(fs, r.checkpoint.path)]
        trial.storage.current_checkpoint_index = max(
            trial.storage.current_checkpoint_index, existing[-1][0] + 1 if existing else 0
        )
        trial.invalidate_json_state()
        trial.run_metadata.invalidate_cache()


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def _name(path: str | None) -> str:
    return posixpath.basename(path) if path else "no checkpoint"


__all__ = ["MANIFEST", "ResumeFromNewestCheckpoint", "checkpoint_dirs", "newest_complete", "read_manifest", "write_manifest"]
