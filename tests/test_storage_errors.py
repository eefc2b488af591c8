"""One storage layer, one error type (issue 11): a missing file is the same StorageError on a local
disk and on S3 (the moto loopback server), and credentials in a URI, an endpoint or a config are
refused with a message that names the problem and never shows the secret."""
from __future__ import annotations

import uuid

import pytest

from mmsearch.config import ConfigError, load_config
from mmsearch.data.dataset_root import DatasetRoot
from mmsearch.orchestration.settings import TuneSettings
from mmsearch.storage import StorageError, StorageLocation, read_bytes, resolve_storage

SECRET = "wJalrXUtnFEMI-not-a-real-secret"


@pytest.fixture
def bucket(s3_server):
    import boto3

    name = f"mms-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_server["endpoint"], region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.mark.s3
def test_a_missing_local_file_and_a_missing_s3_key_raise_the_same_error(tmp_path, s3_server, bucket):
    local = resolve_storage(tmp_path).child("runs", "missing.json")
    remote = resolve_storage(f"s3://{bucket}/runs", s3_server["endpoint"]).child("missing.json")
    for location in (local, remote):
        with pytest.raises(StorageError, match=rf"^{location.uri}: file does not exist$") as err:
            read_bytes(location)
        assert isinstance(err.value, OSError)  # callers that catch OSError keep working
        assert read_bytes(location, missing_ok=True) is None
    gone = resolve_storage("s3://no-such-bucket-here/a.json", s3_server["endpoint"])
    with pytest.raises(StorageError, match="bucket 'no-such-bucket-here' does not exist"):
        read_bytes(gone)
    # The data layer raises the same type (writing a data set's files into a missing bucket).
    with pytest.raises(StorageError, match=r"s3://no-such-bucket-here/ds.*does not exist"):
        DatasetRoot(resolve_storage("s3://no-such-bucket-here/ds", s3_server["endpoint"])).write_answers(["yes"])


@pytest.mark.parametrize(
    ("uri", "endpoint", "problem"),
    [
        (f"s3://AKIDEXAMPLE:{SECRET}@bucket/x", None, r"storage URI s3://\*\*\*@bucket/x: explicit credentials \(user:secret@\)"),
        (f"s3://bucket/x?access_key=AKIDEXAMPLE&secret_key={SECRET}", None, r"explicit credentials \(query keys \['access_key', 'secret_key'\]\)"),
        ("s3://bucket/x", f"http://AKIDEXAMPLE:{SECRET}@127.0.0.1:9000", r"the S3 endpoint http://\*\*\*@127.0.0.1:9000: explicit credentials"),
        ("s3://bucket/x?region=eu-west-1", None, r"query options \['region'\] are not supported"),
    ],
)
def test_credentials_in_a_uri_or_endpoint_are_refused(uri, endpoint, problem):
    for make in (resolve_storage, StorageLocation):  # made from a config, or directly by code
        with pytest.raises(StorageError, match=problem) as err:
            make(uri, endpoint)
        assert SECRET not in str(err.value) and "AKIDEXAMPLE" not in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ([f"aws_secret_access_key={SECRET}"], "aws_secret_access_key"),
        ([f"storage_path=s3://AKIDEXAMPLE:{SECRET}@bucket/experiments"], "storage_path"),
        ([f"s3_endpoint_url=http://127.0.0.1:9000/?secret_key={SECRET}"], "s3_endpoint_url"),
    ],
)
def test_credentials_in_a_config_are_refused(overrides, key):
    with pytest.raises(ConfigError, match=rf"{key}: explicit credentials .* refused in configs \(value not shown\)") as err:
        load_config(TuneSettings, {"experiment_name": "x", "storage_path": "/tmp/x"}, overrides)
    assert SECRET not in str(err.value) and "AKIDEXAMPLE" not in str(err.value)
