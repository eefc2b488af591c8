"""Latent store on S3: a real S3 HTTP server (moto, loopback) through pyarrow's S3 filesystem."""
from __future__ import annotations

import socket
import time
import uuid

import numpy as np
import pytest

from mmsearch.storage import StorageError, StorageLocation, resolve_storage
from mmsearch.data.store import MANIFEST_NAME, LocalStoreStream, StoreError, StoreWriter, open_store, scalar, vector
from mmsearch.data.store.synthetic import write_synthetic_pairs

pytestmark = pytest.mark.s3


@pytest.fixture
def bucket(s3_server):
    import boto3

    name = f"mms-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_server["endpoint"], region_name="us-east-1").create_bucket(Bucket=name)
    return name


def at(uri: str, s3_server) -> StorageLocation:
    """``uri`` on the loopback server (its endpoint set on the location, as a config's s3_endpoint_url)."""
    return resolve_storage(uri, s3_server["endpoint"])


def object_keys(s3_server, bucket) -> list[str]:
    import boto3

    listing = boto3.client("s3", endpoint_url=s3_server["endpoint"], region_name="us-east-1").list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_write_open_stream_on_s3(s3_server, bucket):
    uri = at(f"s3://{bucket}/scenes/train", s3_server)
    write_synthetic_pairs(uri, 900, image_dim=16, text_dim=8, row_group_rows=100, shard_rows=300)
    keys = object_keys(s3_server, bucket)
    assert f"scenes/train/{MANIFEST_NAME}" in keys and sum(k.endswith(".parquet") for k in keys) == 3

    store = open_store(uri, expect={"pairs": {"image": 16, "text": 8}}, check_nan=True)
    assert store.uri == uri.uri and store.meta.num_rows == {"pairs": 900}
    assert store.table("pairs").shard_uris()[0].startswith(f"s3://{bucket}/scenes/train/pairs/part-")
    ids = np.concatenate([b["id"].numpy() for b in LocalStoreStream(store.table("pairs")).epoch(0, 128, seed=1)])
    assert np.array_equal(np.sort(ids), np.arange(900)) and not np.array_equal(ids, np.arange(900))


def test_endpoint_from_environment(s3_server, bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server["endpoint"])
    uri = f"s3://{bucket}/env"
    write_synthetic_pairs(uri, 50, image_dim=4, text_dim=4)
    assert open_store(uri).table("pairs").read_all(["id"])["id"].tolist() == list(range(50))


def test_rewrite_on_s3_keeps_old_version_until_commit(s3_server, bucket):
    uri = at(f"s3://{bucket}/st", s3_server)
    write_synthetic_pairs(uri, 200, image_dim=4, text_dim=4)
    writer = StoreWriter(uri, dataset="synthetic", split="train", overwrite=True, row_group_rows=50, shard_rows=50)
    writer.add_table("pairs", {"id": scalar("int64"), "image": vector(4), "text": vector(4)})
    writer.write_batch("pairs", {"id": np.arange(120), "image": np.zeros((120, 4)), "text": np.zeros((120, 4))})
    # New shards are uploaded, but until commit the store is still the old one.
    assert sum(k.endswith(".parquet") for k in object_keys(s3_server, bucket)) == 1 + 2
    assert len(open_store(uri).table("pairs").read_all(["id"])["id"]) == 200
    writer.commit()
    assert open_store(uri).table("pairs").read_all(["id"])["id"].tolist() == list(range(120))
    assert sum(k.endswith(".parquet") for k in object_keys(s3_server, bucket)) == 3  # old shard removed


def test_missing_store_and_missing_bucket(s3_server, bucket):
    with pytest.raises(StoreError, match=rf"s3://{bucket}/nothing: no latent store here"):
        open_store(at(f"s3://{bucket}/nothing", s3_server))
    with pytest.raises(StorageError, match="s3://no-such-bucket-here/x: bucket 'no-such-bucket-here' does not exist"):
        open_store(at("s3://no-such-bucket-here/x", s3_server))
    with pytest.raises(StorageError, match="bucket 'no-such-bucket-here' does not exist"):
        StoreWriter(at("s3://no-such-bucket-here/x", s3_server), dataset="d", split="s")


def test_unreachable_endpoint_fails_fast_and_names_the_uri(s3_server):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(StorageError, match=r"s3://bkt/st\S*: storage is unreachable"):
        open_store(resolve_storage("s3://bkt/st", f"http://127.0.0.1:{port}"))
    assert time.monotonic() - start < 30


def test_uri_resolution(tmp_path):
    assert resolve_storage(tmp_path).fs_path == str(tmp_path) and not resolve_storage(f"file://{tmp_path}").is_s3
    location = resolve_storage("s3://bkt/a/b/", "http://127.0.0.1:1")
    assert (location.uri, location.fs_path, location.is_s3) == ("s3://bkt/a/b", "bkt/a/b", True)
    assert location.child("pairs", "x.parquet").fs_path == "bkt/a/b/pairs/x.parquet"
    for bad in ("gs://bkt/x", "s3:///x", ""):
        with pytest.raises(StorageError):
            resolve_storage(bad)


def test_killed_write_leftover_objects_are_removed_by_the_next_successful_write(s3_server, bucket):
    """Issue 12 §5: ``part-<id>`` objects of a write killed before its manifest are removed by
    the next write that commits."""
    uri = at(f"s3://{bucket}/st", s3_server)
    writer = StoreWriter(uri, dataset="synthetic", split="train", row_group_rows=50, shard_rows=50)
    writer.add_table("pairs", {"id": scalar("int64"), "image": vector(4), "text": vector(4)})
    writer.write_batch("pairs", {"id": np.arange(120), "image": np.zeros((120, 4)), "text": np.zeros((120, 4))})
    writer._done = True  # killed: no manifest, no cleanup
    assert sum(k.startswith("st/pairs/part-") for k in object_keys(s3_server, bucket)) == 2
    write_synthetic_pairs(uri, 60, image_dim=4, text_dim=4)
    shards = {f"st/{s.file}" for s in open_store(uri).meta.tables["pairs"].shards}
    objects = {k for k in object_keys(s3_server, bucket) if not k.endswith("/")}  # "/": directory markers
    assert objects == shards | {f"st/{MANIFEST_NAME}"}
