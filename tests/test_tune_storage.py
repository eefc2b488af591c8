"""Storage locations and the preflight check: local, read-only, S3 on loopback (moto), unreachable S3."""
from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import socket
import subprocess
import time

import pyarrow.fs as pafs
import pytest

from mmsearch.storage import (
    StorageError,
    preflight,
    read_bytes,
    resolve_storage,
    write_bytes,
)


def test_local_paths_are_normalised(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_storage("results").uri == str(tmp_path / "results")
    assert resolve_storage("file://" + str(tmp_path)).uri == str(tmp_path)
    assert resolve_storage("~/x").uri == os.path.join(os.path.expanduser("~"), "x")
    with pytest.raises(StorageError, match="names no bucket"):
        resolve_storage("s3://")
    with pytest.raises(StorageError, match="unsupported scheme 'gs'"):
        resolve_storage("gs://bucket/x")


def test_local_preflight_writes_reads_and_cleans_up(tmp_path):
    location = resolve_storage(str(tmp_path / "a" / "b"))
    preflight(location)
    assert not (tmp_path / "a").exists()  # the directories it created are removed again (a --check leaves nothing)
    (tmp_path / "a" / "b").mkdir(parents=True)
    preflight(location)
    assert list((tmp_path / "a" / "b").iterdir()) == []  # an existing directory stays; the marker is deleted
    write_bytes(location.child("f.json"), b"{}")
    assert read_bytes(location.child("f.json")) == b"{}"
    assert read_bytes(location.child("missing"), missing_ok=True) is None


@contextlib.contextmanager
def read_only_dir(path):
    """A directory nobody can write to, root included (chmod alone does not stop root)."""
    path.mkdir()
    path.chmod(0o555)
    immutable = False
    if os.geteuid() == 0 and shutil.which("chattr"):
        immutable = subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    try:
        probe = path / "probe"
        try:
            probe.write_text("x")
        except OSError:
            yield path
        else:
            probe.unlink()
            pytest.skip("cannot make a read-only directory here")
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=False)
        path.chmod(0o755)


def test_read_only_dir_fails_with_uri_and_cause(tmp_path):
    with read_only_dir(tmp_path / "ro") as ro:
        with pytest.raises(StorageError) as err:
            preflight(resolve_storage(str(ro / "experiments")))
    message = str(err.value)
    assert str(ro / "experiments") in message
    assert "could not create the directory" in message and ("ermission" in message or "not permitted" in message)


def test_path_below_a_file_fails(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match=r"storage .*/file/exp is not usable: could not create the directory"):
        preflight(resolve_storage(str(tmp_path / "file" / "exp")))


@pytest.fixture
def bucket(s3_server):
    import boto3

    name = f"mmsearch-{time.monotonic_ns() % 10**9}"
    boto3.client("s3", endpoint_url=s3_server["endpoint"]).create_bucket(Bucket=name)
    return name


@pytest.mark.s3
def test_s3_preflight_on_loopback_server(s3_server, bucket):
    import boto3

    location = resolve_storage(f"s3://{bucket}/prefix/", s3_server["endpoint"])
    assert location.uri == f"s3://{bucket}/prefix" and location.fs_path == f"{bucket}/prefix"
    preflight(location)
    write_bytes(location.child("x.json"), b'{"a": 1}')
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_server["endpoint"]).list_objects_v2(Bucket=bucket)["Contents"]]
    assert "prefix/x.json" in keys and not [k for k in keys if "preflight" in k]  # marker deleted
    assert read_bytes(location.child("x.json")) == b'{"a": 1}'
    # The endpoint can come from AWS_ENDPOINT_URL, like for Ray itself.
    os.environ["AWS_ENDPOINT_URL"] = s3_server["endpoint"]
    try:
        assert read_bytes(resolve_storage(f"s3://{bucket}/prefix").child("x.json")) == b'{"a": 1}'
    finally:
        del os.environ["AWS_ENDPOINT_URL"]


@pytest.mark.s3
def test_s3_missing_bucket_fails(s3_server):
    with pytest.raises(StorageError, match=r"storage s3://no-such-bucket/x is not usable: .*(bucket|NoSuchBucket)"):
        preflight(resolve_storage("s3://no-such-bucket/x", s3_server["endpoint"]))


def test_unreachable_s3_fails_fast_with_endpoint_named(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret-123")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    location = resolve_storage("s3://bucket/x", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(StorageError) as err:
        preflight(location)
    assert time.monotonic() - start < 30
    message = str(err.value)
    assert "s3://bucket/x" in message and f"127.0.0.1:{port}" in message
    assert "not-a-real-secret-123" not in message


def test_location_and_filesystem_carry_no_secrets(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    location = resolve_storage("s3://bucket/x", "http://127.0.0.1:9")
    fs = location.filesystem()
    assert isinstance(fs, pafs.S3FileSystem)
    for blob in (pickle.dumps(location), pickle.dumps(fs)):  # Ray pickles both into the experiment
        assert b"very-secret-value" not in blob and b"AKIDEXAMPLE" not in blob
    assert "secret" not in str(location)
