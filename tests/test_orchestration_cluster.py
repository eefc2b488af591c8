"""Connecting to Ray: reuse of a running instance, and what is forwarded to workers (never secrets)."""
from __future__ import annotations

import json

import pytest

from mmsearch.orchestration.cluster import FORWARDED_ENV, connect, in_submitted_job, worker_env_vars


def test_workers_get_endpoint_and_offline_switches_but_no_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    env = worker_env_vars()
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert env["HF_HUB_OFFLINE"] == "1" and env["RAY_AUTH_MODE"] == "disabled"
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(env)
    assert set(env) <= set(FORWARDED_ENV)


def test_inside_a_submitted_job_the_jobs_own_env_vars_are_not_set_twice(monkeypatch):
    # Ray refuses ray.init(runtime_env=...) that sets an env var the submitted job already sets.
    job = {"runtime_env": {"working_dir": "gcs://x.zip", "env_vars": {"HF_HUB_OFFLINE": "1"}}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(job))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert in_submitted_job()
    env = worker_env_vars()
    assert "HF_HUB_OFFLINE" not in env and env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000"


@pytest.mark.ray
def test_connect_reuses_the_running_instance(ray_session, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    info = connect()
    assert info.mode == "local" and info.resources["CPU"] == 2
    assert info.auth_mode == "disabled"  # the test session's explicit setting is kept
    assert "2 CPUs" in info.describe() and "RAY_AUTH_MODE=disabled" in info.describe()


@pytest.mark.ray
def test_auth_mode_is_always_explicit(ray_session, monkeypatch):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # Ray is already imported here, so it runs with an unset mode read as "disabled": connect()
    # records that rather than setting "token", which this process could no longer honour.
    assert connect().auth_mode == "disabled"
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert connect(auth_mode="token").auth_mode == "token"  # an explicit choice is kept
