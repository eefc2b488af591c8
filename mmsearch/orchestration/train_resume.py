"""What a resubmitted Ray Train run resumes from, decided on the driver before Ray starts.

A run directory ``<storage>/<name>/`` holds Ray Train's ``checkpoint_manager_snapshot.json``
(the checkpoints reported, in order) and the ``checkpoint_*/`` directories it lists. Before any
worker starts, :func:`find_resume_point` opens the newest checkpoint the snapshot lists and
checks it: ``train_state.pt`` loads (``weights_only``), every other ``*.pt`` file is a complete
torch zip archive (its central directory, at the end of the file, is there: a truncated upload
or a disk that filled up fails here). A damaged newest checkpoint is skipped, with a warning,
for the one before it; the workers are told which one to load instead of Ray's pick
(:func:`checkpoint_to_restore`). Then the config the checkpoint was written with is compared
with this submission's: a change outside ``RESUMABLE_CHANGES`` is an error naming every key
that changed, ``key: saved -> now`` (use a new run name for a new run).
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import zipfile
from typing import Any

import pyarrow.fs as pafs
import torch

from mmsearch.config import config_to_dict
from mmsearch import storage
from mmsearch.recipes.train_derived.state import RESUMABLE_CHANGES, STATE_FORMAT, STATE_NAME, config_differences

log = logging.getLogger(__name__)
SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train V2's record of a run's checkpoints


class ResumeError(ValueError):
    """The run in storage cannot be resumed with this config (the message says why)."""


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    checkpoint: str | None  # the intact checkpoint's directory name (None: nothing to resume)
    epoch: int = 0  # epochs it holds
    skipped: tuple[str, ...] = ()  # newer checkpoints found damaged (not loaded)

    def loop_config(self, run: storage.StorageLocation) -> dict[str, Any] | None:
        """What the workers need to load ``checkpoint`` instead of a damaged newer one (None: Ray's pick stands)."""
        if not self.skipped or self.checkpoint is None:
            return None
        return {"skip": list(self.skipped), "fs_path": run.child(self.checkpoint).fs_path}


def checkpoint_problem(location: storage.StorageLocation) -> str | None:
    """Why the checkpoint directory at ``location`` cannot be loaded, or None when it looks intact."""
    fs = location.filesystem()
    try:
        infos = fs.get_file_info(pafs.FileSelector(location.fs_path, recursive=True, allow_not_found=True))
    except OSError as exc:
        return f"cannot list it ({exc})"
    files = {info.path[len(location.fs_path):].lstrip("/"): info for info in infos if info.type == pafs.FileType.File}
    if STATE_NAME not in files:
        return f"{STATE_NAME} is missing"
    for name in sorted(n for n in files if n.endswith(".pt")):
        try:
            with fs.open_input_file(files[name].path) as handle:
                zipfile.ZipFile(handle).namelist()  # reads only the central directory at the end
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            return f"{name} is damaged or truncated ({files[name].size} bytes: {exc})"
    return None


def read_checkpoint_state(location: storage.StorageLocation) -> dict[str, Any]:
    raw = storage.read_bytes(location.child(STATE_NAME))
    state = torch.load(io.BytesIO(raw or b""), map_location="cpu", weights_only=True)
    found = state.get("format") if isinstance(state, dict) else type(state).__name__
    if found != STATE_FORMAT:
        raise ValueError(f"not a derived-training state (format {found!r})")
    return state


def find_resume_point(run: storage.StorageLocation, config: Any) -> ResumePoint:
    """The newest intact checkpoint of the run at ``run`` (see the module docstring); raises
    :class:`ResumeError` when the config differs from the checkpoint's or no checkpoint is intact."""
    raw = storage.read_bytes(run.child(SNAPSHOT), missing_ok=True)
    if raw is None:
        return ResumePoint(None)
    try:
        snapshot = json.loads(raw)
        names = [entry["checkpoint_dir_name"] for entry in snapshot.get("checkpoint_results", [])]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ResumeError(f"{run.child(SNAPSHOT).uri} is not a Ray Train checkpoint record ({exc}); "
                          "use a new run name (--name), or move the run directory away") from None
    skipped: list[str] = []
    for name in reversed(names):
        location = run.child(name)
        problem = checkpoint_problem(location)
        state = None
        if problem is None:
            try:
                state = read_checkpoint_state(location)
            except Exception as exc:  # noqa: BLE001 - any unreadable state is a damaged checkpoint
                problem = f"{STATE_NAME} does not load ({type(exc).__name__}: {exc})"
        if problem is not None:
            log.warning("checkpoint %s is damaged (%s); falling back to the one before it", location.uri, problem)
            skipped.append(name)
            continue
        changed = config_differences(state["config"], config_to_dict(config))
        if changed:
            raise ResumeError(
                f"run {run.uri} was started with a different config; changed: {'; '.join(changed)}. Only "
                f"{', '.join(RESUMABLE_CHANGES)} may change on resume: use a new run name (--name) for a new run"
            )
        epoch = int(state.get("progress", {}).get("epoch", 0))
        if skipped:
            log.warning("resuming run %s from the intact checkpoint %s (epoch %d); the damaged newer one(s) %s "
                        "are left in place, unused", run.uri, name, epoch, ", ".join(skipped))
        return ResumePoint(name, epoch, tuple(skipped))
    if skipped:
        raise ResumeError(f"run {run.uri}: every checkpoint is damaged ({', '.join(skipped)}); nothing to resume "
                          "from: use a new run name (--name), or move the run directory away")
    return ResumePoint(None)


def checkpoint_to_restore(given: Any, resume: dict[str, Any] | None) -> Any:
    """In a worker: Ray's checkpoint (``ray.train.get_checkpoint()``), or the driver's intact
    fallback when Ray's is one the driver found damaged. Checkpoints reported later by this run
    (after a worker restart) are taken as Ray gives them."""
    if given is None or not resume or given.path.rstrip("/").rsplit("/", 1)[-1] not in resume["skip"]:
        return given
    log.warning("checkpoint %s is damaged; loading %s instead", given.path, resume["fs_path"])
    return type(given)(path=resume["fs_path"], filesystem=given.filesystem)


__all__ = ["SNAPSHOT", "ResumeError", "ResumePoint", "checkpoint_problem", "checkpoint_to_restore", "find_resume_point"]
