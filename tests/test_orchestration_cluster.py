"""Connecting to Ray: reuse of a running instance, and what is forwarded to workers (never secrets)."""
from __future__ import annotations

import json

import pytest

from mmsearch.orchestration import cluster
from mmsearch.orchestration.cluster import FORWARDED_ENV, connect, in_submitted_job, on_one_machine, worker_env_vars


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


def test_a_ray_started_here_runs_without_ray_trains_preemption_watcher(monkeypatch):
    """One machine: no node to be warned about, and the watcher's actor logs an error-level line."""
    from mmsearch.orchestration import cluster

    class Started(Exception):
        pass

    def fake_init(**kwargs):
        raise Started(kwargs)

    monkeypatch.setattr(cluster.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(cluster.ray, "init", fake_init)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    monkeypatch.delenv("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", raising=False)
    with pytest.raises(Started) as started:
        connect()
    assert started.value.args[0]["runtime_env"]["env_vars"]["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"
    with pytest.raises(Started) as joined:
        connect("127.0.0.1:6379")  # a cluster: its nodes can be preempted, the watcher stays
    assert "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER" not in joined.value.args[0]["runtime_env"]["env_vars"]
    assert cluster.local_env_vars({"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "1"}) == {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "1"}


@pytest.mark.ray
def test_connect_reuses_the_running_instance(ray_session, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    info = connect()
    assert info.mode == "local" and info.resources["CPU"] == 2
    assert info.auth_mode == "disabled"  # the test session's explicit setting is kept
    assert "2 CPUs" in info.describe() and "RAY_AUTH_MODE=disabled" in info.describe()


@pytest.mark.ray
def test_one_machine_is_a_ray_started_here_with_one_node(ray_session, monkeypatch):
    """Where trials may reuse processes (``resource_plan.reuse_actors``): not in a submitted job or
    against ``RAY_ADDRESS`` (a cluster, which may gain nodes), not with several nodes."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert cluster.alive_nodes() == 1 and on_one_machine()  # the session's local Ray
    with monkeypatch.context() as patch:
        patch.setenv("RAY_ADDRESS", ray_session.get_runtime_context().gcs_address)
        assert not on_one_machine()
    with monkeypatch.context() as patch:
        patch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {}}))
        assert not on_one_machine()
    monkeypatch.setattr(cluster, "alive_nodes", lambda: 2)
    assert not on_one_machine()


@pytest.mark.ray
def test_auth_mode_is_always_explicit(ray_session, monkeypatch):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # Ray is already imported here, so it runs with an unset mode read as "disabled": connect()
    # records that rather than setting "token", which this process could no longer honour.
    assert connect().auth_mode == "disabled"
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert connect(auth_mode="token").auth_mode == "token"  # an explicit choice is kept
