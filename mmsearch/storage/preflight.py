"""The storage check before an experiment starts: write, read back and delete a marker file, so
that an unreachable or read-only storage fails at once, with the URI and the cause, instead of
after the first trial's first checkpoint."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

from mmsearch.storage.files import delete_file, read_bytes, write_bytes
from mmsearch.storage.location import StorageError, StorageLocation
from mmsearch.storage.trust import check_resume_trust


def preflight(location: StorageLocation) -> None:
    """Create the directory, write a marker, read it back, delete it; raise StorageError on any
    failure. Directories it had to create are removed again (a check, or a job that fails after
    it, leaves no empty experiment directory behind); whoever writes there next creates them.

    An existing local experiment that others can write is refused first (:mod:`.trust`).
    """
    check_resume_trust(location)
    created = [] if location.is_s3 else _missing_dirs(Path(location.fs_path))
    try:
        _preflight(location)
    finally:
        for directory in created:  # deepest first; stops at the first one something else wrote into
            try:
                directory.rmdir()
            except OSError:
                break


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    for directory in (path, *path.parents):
        if directory.exists():
            break
        missing.append(directory)
    return missing


def _preflight(location: StorageLocation) -> None:
    marker = location.child(f".mmsearch-preflight-{uuid.uuid4().hex[:12]}")
    payload = f"mmsearch storage check {uuid.uuid4().hex}\n".encode()
    step = "connect to"
    try:
        fs = location.filesystem()
        step = "create the directory"
        fs.create_dir(location.fs_path, recursive=True)
        step = f"write the marker file {marker.uri}"
        write_bytes(marker, payload)
        step = f"read back the marker file {marker.uri}"
        echoed = read_bytes(marker)
        step = f"delete the marker file {marker.uri}"
        delete_file(marker)
    except Exception as exc:  # pyarrow raises OSError/PermissionError/ArrowException subclasses
        hint = ""
        if location.is_s3:
            endpoint = location.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or "(AWS default)"
            hint = (
                f" (check the bucket exists, the endpoint {endpoint} is reachable, and credentials in the"
                " standard AWS chain allow writes)"
            )
        raise StorageError(f"storage {location.uri} is not usable: could not {step}: {exc}{hint}") from exc
    if echoed != payload:
        raise StorageError(f"storage {location.uri} is not usable: marker file {marker.uri} read back different content")


__all__ = ["preflight"]
