"""A location handed to another process keeps the S3 endpoint it was opened with (never credentials)."""
from __future__ import annotations

import pickle

from mmsearch.storage import pinned_endpoint, resolve_storage


def test_the_environments_endpoint_is_pinned_into_an_s3_location(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    pinned = pinned_endpoint(resolve_storage("s3://bucket/data"))
    assert pinned.uri == "s3://bucket/data" and pinned.endpoint_url == "http://127.0.0.1:9000"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert pickle.loads(pickle.dumps(pinned)).endpoint_url == "http://127.0.0.1:9000"  # as a Ray task receives it


def test_an_explicit_endpoint_a_local_path_and_no_setting_stay_as_they_are(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000")
    explicit = resolve_storage("s3://bucket/data", "http://10.0.0.5:9000")
    assert pinned_endpoint(explicit).endpoint_url == "http://10.0.0.5:9000"
    assert pinned_endpoint(resolve_storage(str(tmp_path))).endpoint_url is None
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    assert pinned_endpoint(resolve_storage("s3://bucket/data")).endpoint_url is None
