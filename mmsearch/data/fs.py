"""Resolve a storage URI (local path, ``file://``, ``s3://bucket/prefix``) to a pyarrow filesystem.

Everything that reads or writes latent stores goes through :func:`resolve`, so one code path
serves a laptop directory, an S3 bucket, and any S3-compatible server (MinIO, moto, Ceph) at a
custom endpoint.

S3 settings come from, in order: the explicit :class:`S3Options` argument, then the standard
AWS environment (``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` for the endpoint,
``AWS_REGION`` / ``AWS_DEFAULT_REGION`` for the region). Credentials are left to the AWS
default chain (environment, profile, instance role) unless given explicitly; they are never
written anywhere by this module. Note that explicit credentials travel with the filesystem
object when it is pickled (e.g. to Ray workers), while chain credentials are looked up again
in each process, so on a cluster every worker needs the same environment.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

# Seconds; pyarrow's defaults wait much longer on a dead endpoint before failing.
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_REQUEST_TIMEOUT_S = 60.0


class StorageError(OSError):
    """Storage is unreachable, a bucket or path is missing, or a URI is malformed."""


@dataclass(frozen=True)
class S3Options:
    """How to reach an S3-compatible service. ``None`` fields fall back to the AWS environment."""

    endpoint: str | None = None  # e.g. "http://127.0.0.1:9000"; scheme defaults to https
    region: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S


@dataclass(frozen=True)
class Location:
    """A resolved storage location: a filesystem plus the path of the root inside it."""

    uri: str  # normalised URI for messages: "/abs/dir" or "s3://bucket/prefix"
    filesystem: pafs.FileSystem
    path: str  # root path inside ``filesystem`` ("/abs/dir" or "bucket/prefix")

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def join(self, *parts: str) -> str:
        """Filesystem path of ``parts`` below the root."""
        return "/".join([self.path.rstrip("/"), *(p.strip("/") for p in parts if p)])

    def uri_of(self, *parts: str) -> str:
        """URI (for messages and for tools that take URIs) of ``parts`` below the root."""
        return "/".join([self.uri.rstrip("/"), *(p.strip("/") for p in parts if p)])


def _is_s3(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def s3_filesystem(options: S3Options | None = None, bucket: str | None = None) -> pafs.S3FileSystem:
    """An ``S3FileSystem`` configured from ``options`` and the AWS environment."""
    options = options or S3Options()
    endpoint = options.endpoint or _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    region = options.region or _env("AWS_REGION", "AWS_DEFAULT_REGION")
    if region is None and endpoint is None and bucket:
        try:
            region = pafs.resolve_s3_region(bucket)
        except OSError as exc:
            raise StorageError(f"s3://{bucket}: cannot resolve the bucket's region ({exc})") from exc
    kwargs: dict[str, object] = {
        "region": region or "us-east-1",
        "connect_timeout": options.connect_timeout_s,
        "request_timeout": options.request_timeout_s,
    }
    if endpoint:
        kwargs["endpoint_override"] = endpoint
    if options.access_key or options.secret_key:
        if not (options.access_key and options.secret_key):
            raise StorageError("S3 credentials need both access_key and secret_key")
        kwargs.update(access_key=options.access_key, secret_key=options.secret_key)
        if options.session_token:
            kwargs["session_token"] = options.session_token
    return pafs.S3FileSystem(**kwargs)


def resolve(
    uri: str | os.PathLike[str],
    *,
    filesystem: pafs.FileSystem | None = None,
    s3: S3Options | None = None,
) -> Location:
    """Resolve ``uri`` to a :class:`Location`.

    ``filesystem`` (optional) is used as-is; ``uri`` is then a path inside it (an ``s3://``
    scheme is stripped). Otherwise local paths and ``file://`` URIs map to the local
    filesystem and ``s3://bucket/prefix`` to :func:`s3_filesystem`.
    """
    text = os.fspath(uri)
    if not text:
        raise StorageError("empty storage URI")
    if filesystem is not None:
        path = text.split("://", 1)[1] if "://" in text else text
        uri_text = text if "://" in text else (f"s3://{path}" if isinstance(filesystem, pafs.S3FileSystem) else path)
        return Location(uri=uri_text.rstrip("/"), filesystem=filesystem, path=path.rstrip("/"))
    if _is_s3(text):
        parsed = urlparse(text)
        bucket, prefix = parsed.netloc, parsed.path.strip("/")
        if not bucket:
            raise StorageError(f"{text}: no bucket in S3 URI (expected s3://bucket/prefix)")
        path = f"{bucket}/{prefix}" if prefix else bucket
        return Location(uri=f"s3://{path}", filesystem=s3_filesystem(s3, bucket), path=path)
    if text.startswith("file://"):
        text = urlparse(text).path
    elif "://" in text:
        raise StorageError(f"{text}: unsupported URI scheme (use a local path, file:// or s3://)")
    path = str(Path(text).expanduser().resolve())
    return Location(uri=path, filesystem=pafs.LocalFileSystem(), path=path)


def file_info(location: Location, path: str) -> pafs.FileInfo:
    """``get_file_info`` that turns connection failures into a :class:`StorageError` naming the URI."""
    try:
        return location.filesystem.get_file_info(path)
    except OSError as exc:
        raise StorageError(f"{location.uri}: storage is unreachable or refused the request ({exc})") from exc


def check_bucket(location: Location) -> None:
    """Raise a clear :class:`StorageError` when an S3 location's bucket does not exist."""
    if location.is_local or not isinstance(location.filesystem, pafs.S3FileSystem):
        return
    bucket = location.path.split("/", 1)[0]
    if file_info(location, bucket).type == pafs.FileType.NotFound:
        raise StorageError(f"{location.uri}: bucket {bucket!r} does not exist (create it first)")


def list_files(location: Location, directory: str) -> dict[str, int]:
    """Sizes in bytes of the files directly under ``directory`` (a filesystem path); {} if absent."""
    selector = pafs.FileSelector(directory, allow_not_found=True, recursive=False)
    try:
        infos = location.filesystem.get_file_info(selector)
    except OSError as exc:
        raise StorageError(f"{location.uri}: cannot list {directory} ({exc})") from exc
    return {info.path: int(info.size) for info in infos if info.type == pafs.FileType.File}


def write_bytes_atomic(location: Location, path: str, data: bytes) -> None:
    """Write a small file so readers see the old content or the new, never a mix.

    Local: temporary sibling, fsync, rename (``mmsearch.io``). S3: a single PUT, which S3
    makes visible only once complete.
    """
    if location.is_local:
        from mmsearch.io import atomic_write_bytes

        atomic_write_bytes(path, data)
        return
    try:
        with location.filesystem.open_output_stream(path) as stream:
            stream.write(data)
    except OSError as exc:
        raise StorageError(f"{location.uri}: cannot write {path} ({exc})") from exc


def read_bytes(location: Location, path: str) -> bytes:
    try:
        with location.filesystem.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StorageError(f"{location.uri}: cannot read {path} ({exc})") from exc


def publish_local_file(tmp_path: str, final_path: str) -> None:
    """fsync a finished local file and rename it into place (atomic within one filesystem)."""
    with open(tmp_path, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp_path, final_path)


def delete_files(location: Location, paths: list[str]) -> None:
    """Best-effort removal (used to clean up after an aborted write or a replaced version)."""
    for path in paths:
        try:
            location.filesystem.delete_file(path)
        except (FileNotFoundError, OSError):
            pass


__all__ = [
    "Location",
    "S3Options",
    "StorageError",
    "check_bucket",
    "delete_files",
    "file_info",
    "list_files",
    "publish_local_file",
    "read_bytes",
    "resolve",
    "s3_filesystem",
    "write_bytes_atomic",
]
