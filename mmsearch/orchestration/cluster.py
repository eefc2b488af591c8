"""Connect to the Ray cluster a job runs on, or start Ray on this machine.

Under ``ray job submit`` (or with ``RAY_ADDRESS`` set) the driver joins the running cluster;
otherwise Ray starts locally. Either way the driver prints where the dashboard is.

``RAY_AUTH_MODE`` is always explicit: Ray 2.60 turns token authentication on by default for a
local ``ray.init`` but CLI clients only send the token when ``RAY_AUTH_MODE=token``, so a
silent default leaves ``ray job submit`` / dashboard calls failing with 401. We keep the
caller's setting, or write Ray's default (``token``) into the environment, and hand it, the
S3 endpoint and the offline switches of the model hubs to every worker through the job's
``runtime_env``. Credentials are never forwarded (workers use the standard AWS chain of their
node), so they never land in the job config that the dashboard shows; :func:`connect` also stops
Ray Tune copying them into trial actors' runtime envs (:mod:`.credentials`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import ray

from mmsearch.orchestration import quiet
from mmsearch.orchestration.credentials import credential_names, keep_credentials_out_of_runtime_envs
from mmsearch.orchestration.jobs.env import settle_ray_auth_mode

log = logging.getLogger(__name__)

# Non-secret settings every worker needs the same as the driver.
FORWARDED_ENV = (
    "RAY_AUTH_MODE",
    "MMSEARCH_VERBOSE",  # quiet or verbose Ray output (mmsearch.orchestration.quiet)
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",  # the S3-only form, read by mmsearch.storage as AWS SDKs do
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
)
_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray's job supervisor for submitted jobs
# Settings of a Ray instance started here (one machine; a value in the environment wins). Ray
# Train's preemption watcher waits for notices that a node is going away: on the only node there is
# no one to tell, and creating its actor logs an error-level core_worker line ("constructor
# arguments in the object store and max_restarts > 0") in every derived training.
LOCAL_RAY_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}
# Raylet settings of a Ray instance started here. A raylet kills a task worker idle for 1 s (Ray's
# default) while the node runs more worker processes than it has CPUs (its soft limit), which Ray
# Data's zero-CPU reading tasks next to a trial or a training worker always make it do: the reading
# workers died between two passes over the data, and each pass then waited about 2.2 s for new ones
# (a Ray Train worker at 1x, 2 CPUs, from its third epoch: 5.5-6.3 s an epoch instead of 3.7 s;
# bench/README.md, issue 11). A minute spans a validation and a report between two passes; idle
# workers still go after it. Cluster nodes get the same through the environment of `ray start`
# (RAY_idle_worker_killing_time_threshold_ms in the node image, cluster/Dockerfile, which
# ray_cluster.yaml and cluster/kuberay/ run).
LOCAL_RAY_SYSTEM_CONFIG = {"idle_worker_killing_time_threshold_ms": 60_000}


@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    mode: str  # "cluster" (joined a running cluster) or "local" (started here)
    address: str | None  # what we connected to (None: started locally)
    dashboard_url: str | None
    resources: dict[str, float]
    auth_mode: str

    def describe(self) -> str:
        where = f"connected to the Ray cluster at {self.address}" if self.mode == "cluster" else "started Ray locally"
        dash = f"http://{self.dashboard_url}" if self.dashboard_url else "(dashboard not running)"
        cpus, gpus = self.resources.get("CPU", 0), self.resources.get("GPU", 0)
        return f"{where}: {cpus:g} CPUs, {gpus:g} GPUs; dashboard {dash}; RAY_AUTH_MODE={self.auth_mode}"


def in_submitted_job() -> bool:
    return _JOB_CONFIG_ENV in os.environ


def _job_env_keys() -> set[str]:
    """Env vars the submitted job's runtime_env already sets (Ray refuses to set them twice)."""
    try:
        job = json.loads(os.environ.get(_JOB_CONFIG_ENV, "{}"))
        return set((job.get("runtime_env") or {}).get("env_vars") or {})
    except (ValueError, AttributeError):
        return set()


def worker_env_vars() -> dict[str, str]:
    """The forwarded settings present in this process's environment."""
    taken = _job_env_keys()
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ and k not in taken}


def local_env_vars(environ: dict[str, str] | None = None) -> dict[str, str]:
    """``LOCAL_RAY_ENV``, where this process's environment does not set them otherwise."""
    environ = os.environ if environ is None else environ
    return {k: environ.get(k, v) for k, v in LOCAL_RAY_ENV.items()}


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    include_dashboard: bool | None = None,
    auth_mode: str | None = None,
) -> ClusterInfo:
    """Join a running cluster (``address``, ``RAY_ADDRESS``, or the submitted job's) or start Ray here.

    Reuses an already initialised Ray (tests, notebooks). ``num_cpus``/``num_gpus`` only apply
    when starting locally.
    """
    if auth_mode is not None:
        os.environ["RAY_AUTH_MODE"] = auth_mode
    # Entry points settle the mode before Ray is imported (jobs.env); when a caller did not,
    # settle_ray_auth_mode records what this already-imported Ray runs with instead of setting a
    # mode the process cannot honour (that splits driver and GCS).
    settle_ray_auth_mode()
    keep_credentials_out_of_runtime_envs()
    leaked = credential_names(_job_env_keys())
    if leaked:
        log.warning(
            "the submitted job's runtime env sets %s: Ray logs runtime envs in plain text and shows them "
            "in the dashboard; give the nodes credentials (instance profile, ~/.aws/credentials) instead",
            ", ".join(leaked),
        )
    address = address or os.environ.get("RAY_ADDRESS") or None
    joining = address is not None or in_submitted_job()
    if ray.is_initialized():
        context = ray.get_runtime_context()
        mode = "cluster" if joining else "local"
        dashboard = _dashboard_url()
        info = ClusterInfo(mode, address or context.gcs_address, dashboard, ray.cluster_resources(), os.environ["RAY_AUTH_MODE"])
        log.info("%s", info.describe())
        return info
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": worker_env_vars(), **quiet.runtime_env_hook()}}
    if joining:
        ray_context = ray.init(address=address or "auto", **kwargs)
    else:
        kwargs["runtime_env"]["env_vars"] = {**local_env_vars(), **kwargs["runtime_env"]["env_vars"]}
        ray_context = ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=include_dashboard,
                               _system_config=dict(LOCAL_RAY_SYSTEM_CONFIG), **kwargs)
    info = ClusterInfo(
        mode="cluster" if joining else "local",
        address=address or (ray_context.address_info.get("gcs_address") if joining else None),
        dashboard_url=ray_context.dashboard_url or None,
        resources=ray.cluster_resources(),
        auth_mode=os.environ["RAY_AUTH_MODE"],
    )
    if quiet.is_quiet():
        quiet.quiet_process()  # the driver too: it runs Ray Data (precompute) and Tune's checkpoints
    print(info.describe(), flush=True)
    return info


def _dashboard_url() -> str | None:
    try:
        from ray._private.worker import get_dashboard_url  # no public accessor once Ray is initialised

        return get_dashboard_url() or None
    except Exception:  # no dashboard in this session
        return None


def alive_nodes() -> int:
    return sum(1 for node in ray.nodes() if node.get("Alive"))


def on_one_machine() -> bool:
    """Whether Ray runs on this machine alone: started here (no submitted job, no ``RAY_ADDRESS``)
    with one node. A cluster can lose a node, or gain one (autoscaling), after this is asked."""
    return not (os.environ.get("RAY_ADDRESS") or in_submitted_job()) and alive_nodes() == 1


__all__ = ["FORWARDED_ENV", "LOCAL_RAY_SYSTEM_CONFIG", "ClusterInfo", "alive_nodes", "connect", "in_submitted_job", "on_one_machine", "worker_env_vars"]
