"""Shared test fixtures: one Ray instance per test session, a loopback S3 server, tiny data."""
from __future__ import annotations

import os

from canary import CANARY_CREDENTIALS, canary_hits

# Set before anything imports ray: no token auth in tests, no usage stats, no hub access.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# OpenMP threads that spin-wait make small 2-thread torch steps ~10x slower when the cores are
# shared (other test processes, Ray workers); passive waiting costs nothing when they are not.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Recognisable canary credentials for the whole session, set before Ray starts (so local workers
# get them from the node's environment, the standard chain): every Ray test doubles as a leak
# test, and the session Ray's teardown checks that none reached its logs or the state API.
os.environ.update(CANARY_CREDENTIALS)

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _torch_threads_given_back():
    """Every test leaves torch's thread count as it found it: recipes and benchmarks run in process
    set it from their configs, and kernels on another thread count round differently (a later
    test's batch-16 and batch-2 features then differed in the last bits)."""
    import torch

    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (num_cpus=2, small object store)."""
    import ray

    from mmsearch.orchestration.cluster import LOCAL_RAY_SYSTEM_CONFIG, local_env_vars

    if not ray.is_initialized():  # as mmsearch starts a local Ray (cluster.connect), on 2 CPUs
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=512 * 2**20,
            _system_config=dict(LOCAL_RAY_SYSTEM_CONFIG),
            runtime_env={"env_vars": {**local_env_vars(),
                                      **{k: os.environ[k] for k in ("RAY_AUTH_MODE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}}},
        )
    node = ray._private.worker._global_node
    session_dir, gcs = node.get_session_dir_path(), ray.get_runtime_context().gcs_address
    yield ray
    hits = canary_hits(session_dir, gcs)
    ray.shutdown()
    assert not hits, f"canary credentials reached Ray's logs or state API: {hits}"


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible HTTP server (moto in server mode) on 127.0.0.1, for the session.

    Yields a dict with ``endpoint`` ("http://127.0.0.1:PORT") and credentials; tests create
    their own buckets with boto3.
    """
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    creds = {**CANARY_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"}  # moto accepts any key
    old = {k: os.environ.get(k) for k in creds}
    os.environ.update(creds)
    try:
        yield {"endpoint": f"http://127.0.0.1:{port}", **creds}
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
