"""Storage: where data sets, latent stores, experiments and reports live, for every layer.

One Ray-free package serves a local or NFS directory, ``file://``, ``s3://bucket/prefix`` on AWS
and any S3-compatible server (MinIO, Ceph, moto) at a custom endpoint, through ``pyarrow.fs``:

* :mod:`.location` -- :class:`StorageLocation` (picklable, secret-free; ``filesystem()``,
  ``fs_path``, ``child()``), :func:`resolve_storage`, and the one error type, :class:`StorageError`;
* :mod:`.files` -- read, atomic write, upload, list and delete files at a location;
* :mod:`.preflight` -- the write / read-back / delete check before an experiment starts;
* :mod:`.trust` -- resume only from experiment storage nobody else can write (Ray Tune unpickles it).

Credentials come only from the standard AWS chain (environment, ``AWS_PROFILE`` / ``~/.aws``,
instance role); a URI or endpoint that carries them is refused. The endpoint comes from the
config's ``s3_endpoint_url`` or ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``.
"""
from mmsearch.storage.files import (
    check_bucket,
    delete_file,
    delete_files,
    exists,
    file_info,
    is_file,
    list_files,
    publish_local_file,
    read_bytes,
    upload_file,
    write_bytes,
)
from mmsearch.storage.location import StorageError, StorageLocation, pinned_endpoint, resolve_storage
from mmsearch.storage.preflight import preflight
from mmsearch.storage.trust import TUNE_STATE_FILE, check_resume_trust

__all__ = [
    "TUNE_STATE_FILE",
    "StorageError",
    "StorageLocation",
    "check_bucket",
    "check_resume_trust",
    "delete_file",
    "delete_files",
    "exists",
    "file_info",
    "is_file",
    "list_files",
    "pinned_endpoint",
    "preflight",
    "publish_local_file",
    "read_bytes",
    "resolve_storage",
    "upload_file",
    "write_bytes",
]
