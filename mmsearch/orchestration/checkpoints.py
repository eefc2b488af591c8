"""Checkpoints a resumed trial can always find, and the manifest that says a checkpoint is whole.

Ray Tune saves its experiment state (which names each trial's latest checkpoint) every few
seconds, while ``CheckpointConfig(num_to_keep)`` deletes superseded checkpoints at once; a
driver killed with ``kill -9`` in between leaves a state that names a deleted checkpoint, and
every resume of that trial then fails ("Could not recover from checkpoint as it does not exist
on storage anymore").

* :func:`write_manifest`: :class:`~.tune_context.TuneContext` adds ``mmsearch_checkpoint.json``
  (epoch, reported metrics, every file's size) to each checkpoint before Tune persists it, so a
  checkpoint half-copied when the driver died is recognised as incomplete.
* :class:`CheckpointFallback`: a Tune callback that, when a run (re)starts, checks each
  unfinished trial's checkpoint. When the saved state names one that no longer exists (or is
  incomplete), the trial resumes from the newest complete checkpoint in storage (complete: its
  manifest's files are all there with their sizes; one without a manifest counts if it is not
  empty) that is not past the last epoch the saved state recorded, and a line says so; with no
  such checkpoint it restarts from scratch, saying so. Not past the recorded epoch: the saved
  state and the trial's result files were saved together, so every finished epoch's result
  stays in the history (an epoch after it is computed again instead of lost). The checkpoint
  index continues after the highest existing one, so no later checkpoint overwrites one in
  storage.
* :class:`ResultFilesToStorage`: a trial retried after a failure starts by copying its result
  files (``result.json``, ``progress.csv``) back from storage over the driver's own copies (Ray's
  loggers do, to resume them), and the driver uploads them only every so often: a trial that
  failed soon after a report lost that report's row. The callback uploads them when the failure
  is seen, before the retry starts.
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


def newest_complete(
    fs: pafs.FileSystem, trial_path: str, *, max_epoch: int | None = None, max_index: int | None = None
) -> tuple[int, str, dict[str, Any] | None] | None:
    """The newest whole checkpoint, ``(index, path, manifest)``, at or before ``max_epoch``; None when there is none.

    ``max_index`` bounds the checkpoints without a manifest (whose epoch is unknown).
    """
    for index, path in reversed(checkpoint_dirs(fs, trial_path)):
        manifest = read_manifest(fs, path)
        if manifest is None:
            if (max_index is None or index <= max_index) and fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
                return index, path, None  # written without a manifest (not by TuneContext): trust what exists
            continue
        epoch = manifest.get("epoch")
        if max_epoch is not None and not (isinstance(epoch, int) and epoch <= max_epoch):
            continue
        if is_complete(fs, path, manifest):
            return index, path, manifest
    return None


class CheckpointFallback(tune.Callback):
    """On the first step of a (resumed) run, give every unfinished trial a checkpoint that exists (see the module)."""

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
        existing = checkpoint_dirs(fs, trial_path)
        if existing:  # new checkpoints get new names: none overwrites one in storage in place
            trial.storage.current_checkpoint_index = max(trial.storage.current_checkpoint_index, existing[-1][0] + 1)
            trial.invalidate_json_state()
        referenced = manager.latest_checkpoint_result
        if referenced is None:
            return  # the saved state names no checkpoint: the trial starts from scratch, as Ray does
        named = referenced.checkpoint.path
        manifest = read_manifest(fs, named)
        if _exists(fs, named) and (manifest is None or is_complete(fs, named, manifest)):
            return  # what Ray resumes from is there
        recorded = (trial.last_result or {}).get("epoch")
        match = _CHECKPOINT_DIR.match(posixpath.basename(named))
        chosen = newest_complete(fs, trial_path, max_epoch=recorded if isinstance(recorded, int) else None,
                                 max_index=int(match.group(1)) if match else None)
        manager._checkpoint_results = [r for r in manager._checkpoint_results if _exists(fs, r.checkpoint.path)]
        if chosen is None:
            manager._latest_checkpoint_result = None
            print(f"Trial {trial.trial_id}: the saved experiment state names {_name(named)}, which no longer exists "
                  f"whole, and no earlier complete checkpoint is left; the trial restarts from scratch", flush=True)
        else:
            _, path, chosen_manifest = chosen
            metrics = dict(referenced.metrics)
            metrics.update((chosen_manifest or {}).get("metrics") or {})
            # Registered like a checkpoint the trial just reported: it becomes the latest, and the
            # score-ordered retention (best_trial.json's best checkpoint) counts it.
            manager.register_checkpoint(_TrainingResult(checkpoint=tune.Checkpoint(path, filesystem=fs), metrics=metrics))
            epoch = f" (epoch {chosen_manifest['epoch']})" if chosen_manifest else ""
            print(f"Trial {trial.trial_id}: the saved experiment state names {_name(named)}, which no longer exists "
                  f"whole; resuming from {_name(path)}{epoch}, the newest complete checkpoint up to the last "
                  f"recorded epoch ({recorded})", flush=True)
        trial.invalidate_json_state()
        trial.run_metadata.invalidate_cache()


class ResultFilesToStorage(tune.Callback):
    """Before a failed trial is retried, its result files in storage are brought up to date (see the module)."""

    FILES = ("result.json", "progress.csv")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        fs, trial_path = trial.storage.storage_filesystem, trial.storage.trial_fs_path
        for name in self.FILES:
            local = Path(trial.local_path) / name
            if local.is_file():
                fs.create_dir(trial_path, recursive=True)
                pafs.copy_files(local.as_posix(), posixpath.join(trial_path, name), destination_filesystem=fs)


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def _name(path: str | None) -> str:
    return posixpath.basename(path) if path else "no checkpoint"


__all__ = ["MANIFEST", "CheckpointFallback", "ResultFilesToStorage", "checkpoint_dirs", "newest_complete", "read_manifest", "write_manifest"]
