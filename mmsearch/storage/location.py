"""Storage locations: a local (or NFS) path, ``file://`` or ``s3://bucket/prefix``, and the
``pyarrow.fs`` filesystem that reaches it.

S3 settings come from the location's ``endpoint_url`` (a config's ``s3_endpoint_url``) and the
standard AWS environment: ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` for the endpoint,
``AWS_REGION`` / ``AWS_DEFAULT_REGION`` for the region (else the bucket's own region on AWS, or
the SDK's default for a custom endpoint). Credentials come only from the standard AWS chain
(environment, ``AWS_PROFILE`` / ``~/.aws``, instance role): a URI, endpoint or config that
carries them is refused, so neither a pickled location or filesystem, nor a log, nor a report
can contain them.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyarrow.fs as pafs

# Seconds; pyarrow's defaults wait much longer on a dead endpoint before failing.
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 60.0
# Query keys through which pyarrow's ``FileSystem.from_uri`` would take credentials.
_CREDENTIAL_QUERY_KEYS = {"access_key", "secret_key", "session_token", "role_arn", "external_id"}
_CHAIN = "credentials come only from the standard AWS chain (AWS_ACCESS_KEY_ID / AWS_PROFILE / instance role)"


class StorageError(OSError):
    """Storage is unreachable, a bucket, file or key is missing, a URI is malformed or carries
    credentials; the message names the URI and the cause (never a secret)."""


@dataclasses.dataclass(frozen=True)
class StorageLocation:
    """A file or directory in storage. Picklable and secret-free: the filesystem is rebuilt where
    it is used (Ray workers, trials) from the URI, the endpoint and that process's AWS chain."""

    uri: str  # absolute local path, or s3://bucket/prefix
    endpoint_url: str | None = None  # S3 endpoint, e.g. http://127.0.0.1:9000; None = env / AWS default
    # The filesystem, built once per process and shared by child locations; never pickled.
    _cache: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.is_s3:
            _refuse_credentials(self.uri, "storage URI")
        if self.endpoint_url:
            _refuse_credentials(self.endpoint_url, "the S3 endpoint")

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def filesystem(self) -> pafs.FileSystem:
        fs = self._cache.get("fs")
        if fs is None:
            fs = self._cache["fs"] = _s3_filesystem(self) if self.is_s3 else pafs.LocalFileSystem()
        return fs

    @property
    def fs_path(self) -> str:
        """The location as a path on :meth:`filesystem` ("bucket/prefix" for S3): what pyarrow,
        ``pyarrow.parquet`` and ``ray.data.read_parquet`` take together with the filesystem."""
        return self.uri[len("s3://") :].rstrip("/") if self.is_s3 else self.uri

    def child(self, *parts: str) -> StorageLocation:
        """The location of ``parts`` ("a", "b/c.json") below this one (same filesystem)."""
        return dataclasses.replace(self, uri="/".join([self.uri.rstrip("/"), *(p.strip("/") for p in parts if p)]))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": {}}

    def __str__(self) -> str:
        return self.uri + (f" (endpoint {self.endpoint_url})" if self.endpoint_url else "")


def resolve_storage(path: str | os.PathLike[str] | StorageLocation, endpoint_url: str | None = None) -> StorageLocation:
    """Normalise a configured storage path: ``~`` and relative local paths become absolute,
    ``file://`` is dropped, ``s3://bucket/prefix/`` loses its trailing slash. A location passes
    through (with ``endpoint_url`` set when given). Raises :class:`StorageError` on an empty path,
    a foreign scheme, a bucket-less S3 URI, or credentials in the URI or endpoint."""
    if isinstance(path, StorageLocation):
        return path if endpoint_url is None else dataclasses.replace(path, endpoint_url=endpoint_url)
    text = os.fspath(path)
    if not text:
        raise StorageError("storage path is empty")
    parts = urlsplit(text)
    scheme = parts.scheme
    if scheme in ("s3", "s3a"):
        _refuse_credentials(text, "storage URI")  # before parsing drops the query (the endpoint: __post_init__)
        if not parts.netloc:
            raise StorageError(f"storage path {text!r} names no bucket (expected s3://bucket/prefix)")
        prefix = parts.path.strip("/")
        return StorageLocation(uri=f"s3://{parts.netloc}" + (f"/{prefix}" if prefix else ""), endpoint_url=endpoint_url or None)
    if scheme in ("", "file"):
        local = parts.path if scheme == "file" else text
        return StorageLocation(uri=str(Path(local).expanduser().resolve()))
    raise StorageError(f"storage path {text!r}: unsupported scheme {scheme!r} (use a local/NFS path, file:// or s3://)")


def _refuse_credentials(text: str, what: str) -> None:
    """Raise StorageError when ``text`` (a URI) carries credentials or query options; the
    message shows the URI with the secret part masked."""
    parts = urlsplit(text if "://" in text else f"https://{text}")
    if parts.username is not None or parts.password is not None:
        masked = f"{parts.scheme}://***@{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
        raise StorageError(f"{what} {masked}: explicit credentials (user:secret@) are refused; {_CHAIN}")
    if parts.query:
        keys = sorted(parse_qs(parts.query, keep_blank_values=True))
        bare = f"{parts.scheme}://{parts.netloc}{parts.path}"
        if _CREDENTIAL_QUERY_KEYS & {k.lower() for k in keys}:
            raise StorageError(f"{what} {bare}: explicit credentials (query keys {keys}) are refused; {_CHAIN}")
        raise StorageError(f"{what} {bare}: query options {keys} are not supported (set the endpoint and region "
                           "through the config's s3_endpoint_url or the standard AWS settings)")


def pinned_endpoint(location: StorageLocation) -> StorageLocation:
    """``location`` with the S3 endpoint this process would use made explicit (from
    ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` when it names none), so a copy sent to another
    process reads the same server; credentials stay with each process's own chain."""
    endpoint = _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    if not location.is_s3 or location.endpoint_url or endpoint is None:
        return location
    return resolve_storage(location, endpoint)


def _env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def _s3_filesystem(location: StorageLocation) -> pafs.S3FileSystem:
    """An ``S3FileSystem`` for ``location``: endpoint and region from the location and the AWS
    environment; credentials left to the AWS default chain of this process."""
    bucket = location.fs_path.split("/", 1)[0]
    endpoint = location.endpoint_url or _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    region = _env("AWS_REGION", "AWS_DEFAULT_REGION")
    if region is None and endpoint is None:
        try:
            region = pafs.resolve_s3_region(bucket)
        except OSError as exc:
            raise StorageError(f"{location.uri}: cannot find the bucket's region ({exc})") from exc
    kwargs: dict[str, object] = {"connect_timeout": CONNECT_TIMEOUT_S, "request_timeout": REQUEST_TIMEOUT_S}
    if region:
        kwargs["region"] = region
    if endpoint:
        if not location.endpoint_url:  # from the environment (the location's own was checked when made)
            _refuse_credentials(endpoint, "the S3 endpoint")
        parsed = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs.update(endpoint_override=parsed.netloc + parsed.path.rstrip("/"), scheme=parsed.scheme or "https")
    return pafs.S3FileSystem(**kwargs)


__all__ = ["CONNECT_TIMEOUT_S", "REQUEST_TIMEOUT_S", "StorageError", "StorageLocation", "resolve_storage"]
