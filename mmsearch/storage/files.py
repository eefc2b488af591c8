"""Files in storage: read, write (atomically), upload, list, delete, through ``pyarrow.fs``.

Every function takes a :class:`~mmsearch.storage.location.StorageLocation` naming the file (or
directory) and raises :class:`~mmsearch.storage.location.StorageError` naming its URI when the
storage is unreachable, refuses the request, or -- for reads -- the file does not exist, the
same for a local file and an S3 key.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

import pyarrow.fs as pafs

from mmsearch.io import atomic_write_bytes
from mmsearch.storage.location import StorageError, StorageLocation


def file_info(location: StorageLocation) -> pafs.FileInfo:
    """pyarrow's ``FileInfo`` (type, size); connection failures become a StorageError."""
    try:
        return location.filesystem().get_file_info(location.fs_path)
    except OSError as exc:
        raise StorageError(f"{location.uri}: storage is unreachable or refused the request ({exc})") from exc


def exists(location: StorageLocation) -> bool:
    return file_info(location).type != pafs.FileType.NotFound


def is_file(location: StorageLocation) -> bool:
    return file_info(location).type == pafs.FileType.File


def check_bucket(location: StorageLocation) -> None:
    """Raise a clear StorageError when an S3 location's bucket does not exist (no-op locally)."""
    if not location.is_s3:
        return
    bucket = location.fs_path.split("/", 1)[0]
    if not exists(dataclasses.replace(location, uri=f"s3://{bucket}")):
        raise StorageError(f"{location.uri}: bucket {bucket!r} does not exist (create it first)")


def read_bytes(location: StorageLocation, *, missing_ok: bool = False) -> bytes | None:
    """The file's bytes. A missing file is a StorageError ("... does not exist"), or None with
    ``missing_ok=True``."""
    try:
        with location.filesystem().open_input_stream(location.fs_path) as stream:
            return stream.readall()
    except OSError as exc:
        if file_info(location).type == pafs.FileType.NotFound:
            if missing_ok:
                return None
            check_bucket(location)
            raise StorageError(f"{location.uri}: file does not exist") from None
        raise StorageError(f"{location.uri}: cannot read ({exc})") from exc


def write_bytes(location: StorageLocation, data: bytes) -> None:
    """Write a file so readers see the old content or the new, never a mix: a temporary sibling,
    fsync and rename locally (parents created); a single PUT on S3, visible only once complete."""
    try:
        if not location.is_s3:
            atomic_write_bytes(location.fs_path, data)
            return
        with location.filesystem().open_output_stream(location.fs_path) as stream:
            stream.write(data)
    except OSError as exc:
        raise StorageError(f"{location.uri}: cannot write ({exc})") from exc


def upload_file(local_path: str | Path, location: StorageLocation) -> None:
    """Copy a local file to ``location`` atomically, streaming (temp + rename locally; one upload on S3)."""
    try:
        if location.is_s3:
            pafs.copy_files(str(local_path), location.fs_path, source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=location.filesystem())
            return
        target = Path(location.fs_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(local_path, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StorageError(f"{location.uri}: cannot upload {local_path} ({exc})") from exc


def publish_local_file(tmp_path: str, final_path: str) -> None:
    """fsync a finished local file and rename it into place (atomic within one filesystem)."""
    with open(tmp_path, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp_path, final_path)


def list_files(location: StorageLocation) -> dict[str, int]:
    """Sizes in bytes of the files directly in the directory ``location``, by name; {} if absent."""
    selector = pafs.FileSelector(location.fs_path, allow_not_found=True, recursive=False)
    try:
        infos = location.filesystem().get_file_info(selector)
    except OSError as exc:
        raise StorageError(f"{location.uri}: cannot list ({exc})") from exc
    return {info.base_name: int(info.size) for info in infos if info.type == pafs.FileType.File}


def delete_file(location: StorageLocation) -> None:
    """Remove a file if it is there; a failure to remove it is a StorageError."""
    if is_file(location):
        try:
            location.filesystem().delete_file(location.fs_path)
        except OSError as exc:
            raise StorageError(f"{location.uri}: cannot delete ({exc})") from exc


def delete_files(locations: Iterable[StorageLocation]) -> None:
    """Best-effort removal (clean-up after an aborted write or of a replaced version)."""
    for location in locations:
        try:
            location.filesystem().delete_file(location.fs_path)
        except OSError:
            pass


__all__ = [
    "check_bucket",
    "delete_file",
    "delete_files",
    "exists",
    "file_info",
    "is_file",
    "list_files",
    "publish_local_file",
    "read_bytes",
    "upload_file",
    "write_bytes",
]
