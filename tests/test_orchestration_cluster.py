"""Connecting to Ray: reuse of a running instance, and what is forwarded to workers (never secrets)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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


_IDLE_WORKER_PROBE = """
import os, sys, time
import ray
from mmsearch.orchestration.cluster import connect

if sys.argv[1] == "connect":
    connect(num_cpus=1, include_dashboard=False)  # as a job run on this machine starts Ray
elif sys.argv[1] == "address":
    ray.init(address=sys.argv[2])  # a node started by `ray start`
else:
    ray.init(num_cpus=1, include_dashboard=False)  # Ray's own defaults


@ray.remote(num_cpus=0)
def reading_task():  # as Ray Data's reading tasks ask for no CPU: more of them run than the node has CPUs
    time.sleep(1.5)
    return os.getpid()


pids = set(ray.get([reading_task.remote() for _ in range(4)]))
assert len(pids) >= 2, pids  # more task workers than CPUs
time.sleep(3)  # between two passes over the data: a validation, a report
alive = 0
for pid in pids:
    try:
        os.kill(pid, 0)
        alive += 1
    except ProcessLookupError:
        pass
print(len(pids), alive)
"""


def _idle_reading_workers(script, *args: str) -> tuple[int, int]:
    """The probe's task workers, and how many of them are alive 3 s after their last task."""
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    workers, alive = (int(x) for x in proc.stdout.strip().splitlines()[-1].split())
    return workers, alive


@pytest.mark.slow
def test_a_ray_started_here_keeps_idle_reading_workers_between_passes(tmp_path):
    """Ray kills a task worker idle for 1 s once a node runs more workers than CPUs; each pass over
    streamed data then waited ~2.2 s for new reading workers. connect() starts Ray with a minute."""
    assert cluster.LOCAL_RAY_SYSTEM_CONFIG["idle_worker_killing_time_threshold_ms"] >= 10_000  # > the probe's 3 s
    script = tmp_path / "probe.py"
    script.write_text(_IDLE_WORKER_PROBE)
    workers, alive = _idle_reading_workers(script, "connect")
    assert workers >= 2 and alive == workers
    workers, alive = _idle_reading_workers(script, "ray_defaults")  # Ray's 1 s: as many kept as the node has CPUs
    assert workers >= 2 and alive == 1


@pytest.mark.slow
def test_cluster_nodes_keep_idle_reading_workers_as_long_as_a_ray_started_here():
    """The node image sets the same threshold for `ray start` (cluster launcher, KubeRay) through
    the environment, which the raylet reads."""
    from started_processes import StartedProcesses
    from test_cluster_jobs import free_ports

    name, value = "RAY_idle_worker_killing_time_threshold_ms", cluster.LOCAL_RAY_SYSTEM_CONFIG["idle_worker_killing_time_threshold_ms"]
    image = (Path(__file__).resolve().parents[1] / "cluster" / "Dockerfile").read_text()
    assert re.search(rf"^ENV {name}={value}$", image, re.M), f"cluster/Dockerfile sets no ENV {name}={value}"
    temp_dir = tempfile.mkdtemp(prefix="mmidle-", dir="/tmp")  # short: Ray's socket paths live under it
    (gcs,) = free_ports(1)
    started = StartedProcesses()
    env = started.env({**os.environ, name: str(value), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"})
    env.pop("RAY_ADDRESS", None)
    try:
        subprocess.run([str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={gcs}", "--num-cpus=1",
                        "--include-dashboard=false", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
                       env=env, check=True, capture_output=True, timeout=120)
        started.record()
        script = Path(temp_dir) / "probe.py"
        script.write_text(_IDLE_WORKER_PROBE)
        workers, alive = _idle_reading_workers(script, "address", f"127.0.0.1:{gcs}")
        assert workers >= 2 and alive == workers
    finally:
        started.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)
