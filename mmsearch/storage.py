"""Where experiments live: a local or NFS directory, or ``s3://bucket/prefix`` (any S3-compatible store).

One :class:`StorageLocation` names the storage root; every file the orchestration layer writes
(ASHA state, experiment summary) goes through the same ``pyarrow.fs`` filesystem that Ray Tune
uses for checkpoints. Before an experiment starts, :func:`preflight` writes, reads back and
deletes a marker file so that an unreachable or read-only storage fails at once, with the URI
and the cause, instead of after the first trial's first checkpoint.

Credentials come from the standard AWS chain only (environment, profile, instance role); they
are never passed explicitly, so neither pickled experiment state nor logs can contain them.
A custom endpoint (MinIO, Ceph, moto) comes from config or ``AWS_ENDPOINT_URL``.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from mmsearch.io import atomic_write_bytes


class StorageError(RuntimeError):
    """Storage is unreachable, missing, or not writable; the message names the URI and the cause."""


@dataclasses.dataclass(frozen=True)
class StorageLocation:
    """A storage root. Picklable and secret-free: the filesystem is rebuilt where it is used."""

    uri: str  # absolute local path, or s3://bucket/prefix
    endpoint_url: str | None = None  # S3 endpoint, e.g. http://127.0.0.1:9000; None = env / AWS default
    # The filesystem, built once per process and shared by child locations; never pickled.
    _cache: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def filesystem(self) -> pafs.FileSystem:
        fs = self._cache.get("fs")
        if fs is None:
            fs = self._cache["fs"] = self._build_filesystem()
        return fs

    def _build_filesystem(self) -> pafs.FileSystem:
        if not self.is_s3:
            return pafs.LocalFileSystem()
        if self.endpoint_url is None:
            # As Ray does: honours AWS_ENDPOINT_URL and finds the bucket's region on AWS.
            return pafs.FileSystem.from_uri(self.uri)[0]
        parsed = urlparse(self.endpoint_url if "://" in self.endpoint_url else f"https://{self.endpoint_url}")
        return pafs.S3FileSystem(endpoint_override=parsed.netloc, scheme=parsed.scheme or "https")

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": {}}

    @property
    def fs_path(self) -> str:
        """The root as a path on :meth:`filesystem` ("bucket/prefix" for S3)."""
        return self.uri[len("s3://") :].rstrip("/") if self.is_s3 else self.uri

    def child(self, *parts: str) -> StorageLocation:
        return dataclasses.replace(self, uri="/".join([self.uri.rstrip("/"), *parts]))

    def __str__(self) -> str:
        return self.uri + (f" (endpoint {self.endpoint_url})" if self.endpoint_url else "")


def resolve_storage(path: str, endpoint_url: str | None = None) -> StorageLocation:
    """Normalise a configured storage path: ``~`` and relative local paths become absolute."""
    if not path:
        raise StorageError("storage_path is empty")
    scheme = urlparse(path).scheme
    if scheme == "s3":
        bucket = path[len("s3://") :].split("/", 1)[0]
        if not bucket:
            raise StorageError(f"storage_path {path!r} names no bucket (expected s3://bucket/prefix)")
        return StorageLocation(uri=path.rstrip("/"), endpoint_url=endpoint_url)
    if scheme in ("", "file"):
        local = path[len("file://") :] if scheme == "file" else path
        return StorageLocation(uri=str(Path(local).expanduser().resolve()))
    raise StorageError(f"storage_path {path!r}: unsupported scheme {scheme!r} (use a local/NFS path or s3://)")


def write_bytes(location: StorageLocation, data: bytes) -> None:
    """Write one file atomically: temp file + rename locally; a single PUT (atomic) on S3."""
    if not location.is_s3:
        atomic_write_bytes(location.uri, data)
        return
    fs = location.filesystem()
    with fs.open_output_stream(location.fs_path) as out:
        out.write(data)


def upload_file(local_path: str | Path, location: StorageLocation) -> None:
    """Copy a local file to ``location`` atomically, streaming (temp + rename locally; one upload on S3)."""
    if not location.is_s3:
        target = Path(location.uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(local_path, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return
    pafs.copy_files(
        str(local_path),
        location.fs_path,
        source_filesystem=pafs.LocalFileSystem(),
        destination_filesystem=location.filesystem(),
    )


def read_bytes(location: StorageLocation) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    fs = location.filesystem()
    if fs.get_file_info(location.fs_path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(location.fs_path) as src:
        return src.readall()


def delete_file(location: StorageLocation) -> None:
    fs = location.filesystem()
    if fs.get_file_info(location.fs_path).type == pafs.FileType.File:
        fs.delete_file(location.fs_path)


def exists(location: StorageLocation) -> bool:
    return location.filesystem().get_file_info(location.fs_path).type != pafs.FileType.NotFound


def preflight(location: StorageLocation) -> None:
    """Create the directory, write a marker, read it back, delete it; raise StorageError on any
    failure. Directories it had to create are removed again (a check, or a job that fails after
    it, leaves no empty experiment directory behind); whoever writes there next creates them.

    An existing local experiment that others can write is refused first (:mod:`mmsearch.storage_trust`).
    """
    from mmsearch.storage_trust import check_resume_trust  # imports this module

    check_resume_trust(location)
    created = [] if location.is_s3 else _missing_dirs(Path(location.uri))
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
        if echoed != payload:
            raise StorageError(f"marker file {marker.uri} read back different content")
        step = f"delete the marker file {marker.uri}"
        fs.delete_file(marker.fs_path)
    except StorageError:
        raise
    except Exception as exc:  # pyarrow raises OSError/PermissionError/ArrowException subclasses
        hint = ""
        if location.is_s3:
            endpoint = location.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or "(AWS default)"
            hint = (
                f" (check the bucket exists, the endpoint {endpoint} is reachable, and credentials in the"
                " standard AWS chain allow writes)"
            )
        raise StorageError(f"storage {location.uri} is not usable: could not {step}: {exc}{hint}") from exc


__all__ = [
    "StorageError",
    "StorageLocation",
    "delete_file",
    "exists",
    "preflight",
    "read_bytes",
    "resolve_storage",
    "upload_file",
    "write_bytes",
]
