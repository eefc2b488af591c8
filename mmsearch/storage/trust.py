"""The trust boundary of experiment storage: resume only from a directory nobody else can write.

Resuming an experiment makes Ray Tune unpickle what it wrote there (``tuner.pkl``, and
cloudpickled objects inside ``experiment_state-*.json`` and the searcher's ``*.pkl``):
whoever can write the experiment directory can run code on the machine that resumes it. So:

* a **local (or NFS) experiment directory** is resumed only if it, and every file Tune loads
  from it, belongs to the user running the job and is writable by nobody else (no world write
  bit, no group write bit unless the group is the user's private one, no symlinks); otherwise
  :func:`check_resume_trust` raises ``StorageError`` (the jobs exit 2 before Ray starts);
* an **S3 prefix** is trusted as far as its bucket policy goes: only principals allowed to
  write the prefix can plant a pickle there, so give write access to the prefix only to those
  you would let run code on the resuming machine (there is no ownership to check on S3);
* mmsearch's own files (``mmsearch_state/*.json``, ``experiment_summary.json``,
  ``best_trial.json``, specs) are JSON, and the recipes' checkpoints are loaded with
  ``torch.load(weights_only=True)`` (tensors and plain values, no code).
"""
from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

from mmsearch.storage.location import StorageError, StorageLocation

TUNE_STATE_FILE = "tuner.pkl"  # present once Ray Tune created the experiment
_LOADED_ON_RESUME = (".pkl", ".json")  # the files directly in the experiment directory that Tune reads back


def check_resume_trust(location: StorageLocation) -> None:
    """Raise StorageError when a local experiment to resume can be written by someone else."""
    if location.is_s3:
        return
    root = Path(location.fs_path)
    if not (root / TUNE_STATE_FILE).exists() and not (root / TUNE_STATE_FILE).is_symlink():
        return  # nothing to resume (a new experiment)
    paths = [root] + sorted(p for p in root.iterdir() if p.name.endswith(_LOADED_ON_RESUME))
    for path in paths:
        problem = _untrusted(path)
        if problem:
            raise StorageError(
                f"refusing to resume {location.uri}: {path} {problem}; resuming unpickles Ray Tune's state from "
                "this directory, which runs code, so it must be yours and writable by nobody else "
                f"(if you trust its contents: chmod -R go-w {root}; else use a new experiment name)"
            )


def _untrusted(path: Path) -> str | None:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if info.st_uid != os.getuid():
        return f"belongs to another user (uid {info.st_uid})"
    if info.st_mode & stat.S_IWOTH:
        return f"is writable by others (mode {stat.S_IMODE(info.st_mode):o})"
    if info.st_mode & stat.S_IWGRP and not _private_group(info.st_gid):
        return f"is writable by its group, which has other members (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _private_group(gid: int) -> bool:
    """The user's own group (umask 002 systems): named after the user, nobody else in it."""
    try:
        group, user = grp.getgrgid(gid), pwd.getpwuid(os.getuid())
    except KeyError:
        return False
    return group.gr_name == user.pw_name and set(group.gr_mem) <= {user.pw_name} and gid == user.pw_gid


__all__ = ["TUNE_STATE_FILE", "check_resume_trust"]
