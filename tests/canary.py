"""Canary AWS credentials for the test session, and where to look for them (Ray's logs, state API).

The values are recognisable and fake (moto accepts any key). :func:`canary_hits` greps a Ray
session directory (``runtime_env_agent.log`` is where Ray 2.60 wrote trial runtime envs) and
asks the GCS for every actor's full record, the data ``ray list actors --detail`` serves
(runtime env included); it works without the dashboard, which the session Ray does not run.
"""
from __future__ import annotations

from pathlib import Path

CANARY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIAMMSEARCHCANARY01",
    "AWS_SECRET_ACCESS_KEY": "mmsearch-canary-secret-5b1f0e",
    "AWS_SESSION_TOKEN": "mmsearch-canary-session-token-9c2d",
}
CANARY_MARKERS = ("MMSEARCHCANARY", "mmsearch-canary")


def grep_tree(root: str | Path, markers=CANARY_MARKERS) -> list[str]:
    """Files under ``root`` whose bytes contain a marker (sockets and unreadable files skipped).

    Skipped: a job's working-directory upload (``runtime_resources/working_dir_files``), the
    checkout's own code shipped to the nodes, which includes this file.
    """
    hits = []
    for path in Path(root).rglob("*"):
        if path.name == Path(__file__).name or "working_dir_files" in path.parts:
            continue
        try:
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                if any(m.encode() in data for m in markers):
                    hits.append(str(path))
        except OSError:
            continue
    return hits


def gcs_actor_records(gcs_address: str) -> str:
    """Every actor's record as the GCS holds it (what the state API's ``list_actors(detail=True)`` reads)."""
    from ray._private.grpc_utils import init_grpc_channel
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    channel = init_grpc_channel(gcs_address)
    try:
        stub = gcs_service_pb2_grpc.ActorInfoGcsServiceStub(channel)
        return str(stub.GetAllActorInfo(gcs_service_pb2.GetAllActorInfoRequest(), timeout=30))
    finally:
        channel.close()


def canary_hits(session_dir: str | Path, gcs_address: str | None) -> list[str]:
    hits = grep_tree(session_dir)
    if gcs_address is not None:
        records = gcs_actor_records(gcs_address)
        hits += [f"GCS actor records ({marker})" for marker in CANARY_MARKERS if marker in records]
    return hits
