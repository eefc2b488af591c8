"""The search job on a real two-node Ray cluster on loopback, submitted with ``ray job submit``.

The module starts, once: a head node (``ray start --head``, dashboard on 127.0.0.1) and a second
node (``ray start --address``) on this machine, one CPU each, sharing a private temp dir and
ports of their own; and an S3 server (``moto_server``, a separate process on 127.0.0.1) with a
bucket made by boto3. Both nodes and every client run with ``RAY_AUTH_MODE=disabled``; S3
credentials and endpoint reach the nodes through their environment, as the standard AWS chain
would on a real cluster.

This test process never calls ``ray.init``: jobs are submitted with the ``ray`` CLI, watched
through the Jobs API (``JobSubmissionClient``, HTTP) and their results read with boto3 and
``summarize_experiment`` (files only). So it cannot collide with the session Ray of
``tests/conftest.py`` (``ray_session``), which may be running in the same pytest process: the
cluster has its own temp dir and ports, and teardown stops exactly the processes the fixture
started, by their PIDs and the marker variable they inherit (``tests/started_processes.py``:
also those that do not name the temp dir, such as ``ray.util.client.server``), never ``ray
stop``, which would kill every Ray on the machine, the session's included.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from canary import CANARY_CREDENTIALS, CANARY_MARKERS, grep_tree
from started_processes import StartedProcesses

pytestmark = [pytest.mark.slow, pytest.mark.s3]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BUCKET = "mmsearch-cluster"
JOB_TIMEOUT_S = 420
# What a job's working directory upload leaves out besides .gitignore'd files: git history, data
# and results that live in the checkout. The upload is the code and the configs.
EXCLUDES = [".git", "stores", "runs", "bench/results", ".mmsearch_cache", "*.egg-info", "**/__pycache__"]
MAX_PACKAGE_MIB = 4.0  # uncompressed; the code and configs are well under 2 MiB


def free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def http_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


class Cluster:
    """Handles of the running cluster and S3 server."""

    def __init__(self, temp_dir: str, dashboard: str, env: dict[str, str], s3_endpoint: str) -> None:
        self.temp_dir, self.dashboard, self.env, self.s3_endpoint = temp_dir, dashboard, env, s3_endpoint

    def node_ids(self) -> set[str]:
        nodes = http_json(f"{self.dashboard}/api/v0/nodes?limit=10")["data"]["result"]["result"]
        return {n["node_id"] for n in nodes if n["state"] == "ALIVE"}

    def s3(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")  # moto takes any key

    def keys(self, prefix: str) -> list[str]:
        pages = self.s3().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def read(self, key: str) -> bytes:
        return self.s3().get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def jobs(self):
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.dashboard)

    def submit(self, *job_args: str) -> tuple[str, str]:
        """``ray job submit --working-dir <checkout> -- python jobs/search_vqa.py ARGS``; returns (id, CLI output)."""
        submission_id = f"mmsearch-test-{uuid.uuid4().hex[:8]}"
        command = [str(BIN / "ray"), "job", "submit", "--address", self.dashboard, "--submission-id", submission_id,
                   "--working-dir", str(REPO), "--runtime-env-json", json.dumps({"excludes": EXCLUDES}), "--no-wait",
                   "--", "python", "jobs/search_vqa.py", *job_args]
        done = subprocess.run(command, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        return submission_id, output

    def wait(self, submission_id: str, until=("SUCCEEDED", "FAILED", "STOPPED"), timeout_s: float = JOB_TIMEOUT_S) -> str:
        client, deadline = self.jobs(), time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = str(client.get_job_status(submission_id).value)
            if status in until:
                return status
            time.sleep(1.0)
        raise AssertionError(f"job {submission_id} still {status} after {timeout_s} s; log tail:\n{self.log(submission_id)}")

    def worker_node_id(self) -> str:
        """The second node's id (the one that is not the head)."""
        nodes = http_json(f"{self.dashboard}/api/v0/nodes?limit=10")["data"]["result"]["result"]
        return next(n["node_id"] for n in nodes if not n["is_head_node"])

    def raylet_pid(self, node_dir: str) -> int:
        """The pid of the raylet of the node whose temp dir is ``<temp_dir>/<node_dir>``."""
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if cmdline[0].endswith(b"/raylet") and any(f"{self.temp_dir}/{node_dir}/".encode() in a for a in cmdline):
                    return int(pid)
        raise AssertionError(f"no raylet of {node_dir} running")

    def trial_processes(self, node_dir: str) -> set[int]:
        """The node's worker processes running a trial: the raylet's children titled
        ``ray::ImplicitFunc...`` (Ray names a worker after its actor class and current task)."""
        raylet, found = str(self.raylet_pid(node_dir)), set()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
                if ppid == raylet and Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::ImplicitFunc"):
                    found.add(int(pid))
        return found

    def kill_raylet(self, node_dir: str) -> int:
        """SIGKILL the raylet of the node whose temp dir is ``<temp_dir>/<node_dir>``: the node is lost."""
        pid = self.raylet_pid(node_dir)
        os.kill(pid, 9)
        return pid

    def working_dir_files(self) -> dict[str, int]:
        """Relative path -> size of the files the jobs' working directory upload delivered to the nodes."""
        found: dict[str, int] = {}
        for package in Path(self.temp_dir).glob("*/session_*/runtime_resources/working_dir_files/_ray_pkg_*"):
            found.update({str(p.relative_to(package)): p.stat().st_size for p in package.rglob("*") if p.is_file()})
        return found

    def log(self, submission_id: str, tail: int | None = 8000) -> str:
        text = self.jobs().get_job_logs(submission_id)
        return text if tail is None else text[-tail:]


@pytest.fixture(scope="module")
def cluster():
    temp_dir = tempfile.mkdtemp(prefix="mmrc-", dir="/tmp")  # short: Ray's socket paths live under it
    # Both nodes' temp dirs are inside it, so every process of this cluster names it on its command line.
    gcs, dashboard, client, agent_head, agent_worker, moto = free_ports(6)
    started = StartedProcesses()
    env = started.env({
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # as in an activated venv: the job's `python`
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        **CANARY_CREDENTIALS,  # the nodes' environment: what their standard AWS chain finds
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto}",
        "MMSEARCH_CACHE": os.path.join(temp_dir, "cache"),  # the smoke data set, built by the first job
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    })
    env.pop("RAY_ADDRESS", None)
    moto_proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(moto)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Each node its own temp (session) dir: nodes sharing one would share the job's unpacked working
    # directory, and the first node done with it deletes it under the other's processes.
    common = ["--num-cpus=1", "--object-store-memory=200000000", "--disable-usage-stats"]
    try:
        subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1",
                        f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
                        f"--dashboard-agent-listen-port={agent_head}", f"--temp-dir={temp_dir}/head", *common],
                       env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([str(BIN / "ray"), "start", f"--address=127.0.0.1:{gcs}", f"--temp-dir={temp_dir}/node2",
                        f"--dashboard-agent-listen-port={agent_worker}", *common],
                       env=env, check=True, capture_output=True, timeout=120)
        handle = Cluster(temp_dir, f"http://127.0.0.1:{dashboard}", env, f"http://127.0.0.1:{moto}")
        deadline = time.monotonic() + 60
        while len(handle.node_ids()) < 2 or not _s3_up(handle):
            assert time.monotonic() < deadline, "the cluster or the S3 server did not come up"
            time.sleep(0.5)
        handle.s3().create_bucket(Bucket=BUCKET)
        started.record()  # both nodes' daemons and moto, by PID
        yield handle
    finally:
        started.stop()
        moto_proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            moto_proc.wait(timeout=10)
        if moto_proc.poll() is None:
            moto_proc.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _s3_up(cluster: Cluster) -> bool:
    try:
        cluster.s3().list_buckets()
        return True
    except Exception:  # connection refused while moto starts
        return False


def trial_starts(cluster: Cluster, experiment: str) -> dict[str, list[dict]]:
    """Trial directory -> the start records its trials wrote (mmsearch.orchestration.jobs.trials)."""
    starts: dict[str, list[dict]] = {}
    for key in cluster.keys(f"{experiment}/"):
        parts = key[len(experiment) + 1 :].split("/")
        if len(parts) == 3 and parts[1] == "trial_starts":
            starts.setdefault(parts[0], []).append(json.loads(cluster.read(key)))
    return starts


def summary_now(cluster: Cluster, experiment: str, monkeypatch, *, required: bool = False):
    """The experiment's summary from what is in S3 (None while Tune has written no state yet, unless ``required``)."""
    from mmsearch.orchestration.experiment import summarize_experiment
    from mmsearch.storage import resolve_storage

    monkeypatch.setenv("AWS_ENDPOINT_URL", cluster.s3_endpoint)
    for key, value in CANARY_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    try:
        return summarize_experiment(resolve_storage(f"s3://{BUCKET}/{experiment}", cluster.s3_endpoint))
    except Exception:  # no experiment state yet
        if required:
            raise
        return None


def live_trial_actors(cluster: Cluster) -> set[str]:
    """The ids of the trials' actors that are not dead (being created or alive), on any node."""
    from ray.util.state import list_actors

    actors = list_actors(address=cluster.dashboard, limit=1000, raise_on_missing_output=False)
    return {a.actor_id for a in actors if a.class_name == "ImplicitFunc" and a.state != "DEAD"}


def failure_excerpt(log: str, tail: int = 3000) -> str:
    """What says why a job failed: its lines on errors and failures (not the trials' result tables),
    then its last ``tail`` characters."""
    lines = [line for line in log.splitlines() if "\u2502" not in line
             and any(word in line for word in ("rror", "failed", "Traceback", "died", "marked dead"))]
    return "\n".join(lines[-60:]) + "\n...\n" + log[-tail:]


def test_smoke_search_job_killed_resubmitted_and_node_lost_completes_with_results_in_s3(cluster, monkeypatch):
    """The smoke search as a user submits it to a two-node cluster, stopped mid-run and resubmitted:
    the resubmission resumes without redoing finished trials; while it runs, the second node's
    raylet is killed under a trial, which is restored from its checkpoint on the head node (on a
    cluster every trial gets a fresh process: ``resource_plan.reuse_actors``); the
    experiment ends with its results and report in S3, trials having run on both nodes, the lost
    trial's failure and retry in the summary (one job pair for three faults' worth of checks)."""
    name = f"smoke-{uuid.uuid4().hex[:6]}"
    # Two trials at a time (one CPU each: one per node) for twelve epochs, none stopped early by
    # ASHA (its one rung at the full budget): when the first pair has finished, the second is
    # mid-run, with a checkpoint to resume from and epochs enough left that it is still mid-run when
    # the stop lands. The saved state trails the trials by an epoch or so and the stop takes a moment
    # more (3 epochs under load, seen with reuse_actors on); with four epochs and ASHA's smoke rungs
    # at 1 and 2, a trial could end in between, leaving nothing to resume (a CI failure).
    epochs = 12
    args = ("--smoke-test", "--storage", f"s3://{BUCKET}/experiments", "--name", name,
            "tune.resources.cpus_per_trial=1", f"recipe.search.epochs={epochs}",
            f"tune.scheduler.grace_period={epochs}")
    experiment = f"experiments/{name}"
    first, _ = cluster.submit(*args)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    saved_epochs = lambda trial: int(trial.checkpoint_path.rsplit("_", 1)[1]) + 1  # noqa: E731  checkpoint_<epoch-1>
    while True:  # until the saved experiment state has a finished trial and a resumable one, early in its run
        summary = summary_now(cluster, experiment, monkeypatch)
        trials = summary.trials if summary else []
        if any(t.stop_reason != "unfinished" for t in trials) and any(
                t.stop_reason == "unfinished" and t.checkpoint_path and saved_epochs(t) <= epochs // 4
                for t in trials):
            break
        status = cluster.jobs().get_job_status(first).value
        assert time.monotonic() < deadline and status in ("PENDING", "RUNNING"), cluster.log(first)
        time.sleep(0.5)
    cluster.jobs().stop_job(first)
    assert cluster.wait(first) == "STOPPED"
    first_log = cluster.log(first, tail=None)
    # The data set was built once into the experiments' storage, where trials on both nodes read it.
    assert "Building data set 'scenes' at s3://" in first_log
    assert "connected to the Ray cluster" in first_log and f"dashboard {cluster.dashboard}" in first_log
    assert first_log.count(f"Results go to s3://{BUCKET}/{experiment}") == 1  # said once, before Ray starts

    saved = summary_now(cluster, experiment, monkeypatch, required=True)  # what the resubmitted job resumes from
    done_before = {t.trial_id for t in saved.trials if t.stop_reason in ("completed", "stopped_by_asha")}
    resumable = {t.trial_id for t in saved.trials if t.stop_reason == "unfinished" and t.checkpoint_path}
    assert done_before and resumable, [(t.trial_id, t.stop_reason, t.checkpoint_path) for t in saved.trials]

    # The stopped job's trials die after it, a moment later under load: until they have, one may
    # still hold the second node's CPU, and the resumed trials could all run on the head node,
    # leaving nothing for the node loss to hit (in one CI run the resumed job ended without a
    # trial placed there).
    deadline = time.monotonic() + 60
    while live_trial_actors(cluster):
        assert time.monotonic() < deadline, "the stopped job's trials are still alive after 60 s"
        time.sleep(0.3)
    nodes, lost = cluster.node_ids(), cluster.worker_node_id()
    # after the stopped job's trials are gone, so none of theirs can be mirrored to storage later
    starts_before = {d: len(r) for d, r in trial_starts(cluster, experiment).items()}
    second, _ = cluster.submit(*args)
    # Node loss: as soon as a worker process on the second node runs a trial of the resubmitted job,
    # that node's raylet dies (the trial's remaining epochs take a few seconds; its process is there
    # before its first epoch). The two resumed trials run side by side, one CPU per node, so one of
    # them runs there. (Watching the state API for its actor there missed a trial that ran there for
    # 7 s, in 4 of 14 runs here; its start record in storage comes with its first report, too late
    # for a trial with one or two epochs left.)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not cluster.trial_processes("node2"):
        status = cluster.jobs().get_job_status(second).value
        if not (time.monotonic() < deadline and status in ("PENDING", "RUNNING")):
            where = {d[-40:]: [(r["node_id"][:8], r["time"][11:23]) for r in records]
                     for d, records in trial_starts(cluster, experiment).items()}
            pytest.fail(f"job {status} before a trial ran on the second node ({lost[:8]}); trial starts "
                        f"(node, time): {where}\n{failure_excerpt(cluster.log(second, tail=None))}")
        time.sleep(0.3)
    killed_at = time.time()
    cluster.kill_raylet("node2")
    status = cluster.wait(second)
    log = cluster.log(second, tail=None)
    assert status == "SUCCEEDED", failure_excerpt(log)
    assert f"Resuming experiment s3://{BUCKET}/{experiment}" in log
    files = cluster.working_dir_files()
    assert "jobs/search_vqa.py" in files and "configs/search/vqa.yaml" in files
    assert not [f for f in files if f.split("/")[0] in (".git", "stores", "runs", ".venv", "venv")], files
    assert sum(files.values()) < MAX_PACKAGE_MIB * 2**20, sorted(files.items(), key=lambda kv: -kv[1])[:10]

    final = summary_now(cluster, experiment, monkeypatch, required=True)
    assert len(final.trials) == 4
    assert all(t.stop_reason in ("completed", "stopped_by_asha") for t in final.trials)
    starts = trial_starts(cluster, experiment)
    for trial_dir, records in starts.items():
        trial_id = next(t.trial_id for t in final.trials if t.trial_id in trial_dir)
        new = sorted(records, key=lambda r: r["time"])[starts_before.get(trial_dir, 0) :]
        if trial_id in done_before:
            assert not new, f"finished trial {trial_id} was started again: {new}"
        if trial_id in resumable:  # continued from its last saved checkpoint, not from scratch
            assert new and all(r["restored_from"] is not None for r in new), records
            # named by its place in storage, not by the node's temporary download (checkpoint_tmp_<hex>)
            assert all(r["restored_from"].startswith(f"s3://{BUCKET}/{experiment}/")
                       and r["restored_from"].rsplit("/", 1)[1][11:].isdigit() for r in new), new
    assert len(starts) == 4 and {r["node_id"] for records in starts.values() for r in records} == nodes
    # the trial that lost its node: started again afterwards on the head node, its failure and retry counted
    (lost_record,) = [t for t in final.trials if t.failures]
    assert (lost_record.failures, lost_record.retries) == (1, 1)
    at = lambda record: dt.datetime.fromisoformat(record["time"]).timestamp()  # noqa: E731
    lost_trial = next(d for d in starts if lost_record.trial_id in d)
    # Its retry, the last start after the kill, is on the head node.
    after = sorted((r for r in starts[lost_trial] if at(r) > killed_at), key=at)
    assert after and after[-1]["node_id"] != lost, starts[lost_trial]

    keys = set(cluster.keys(experiment + "/"))
    for expected in ("experiment_summary.json", "best_trial.json", "best_arch.json", "report/report.html",
                     "report/learning_curves.png", "mmsearch_state/asha_state.json"):
        assert f"{experiment}/{expected}" in keys, sorted(keys)
    summary = json.loads(cluster.read(f"{experiment}/experiment_summary.json"))
    assert len(summary["trials"]) == 4 and summary["best"] is not None
    assert (summary["failures"], summary["retries"]) == (1, 1)  # the lost node's trial, counted once
    assert all(t["checkpoint_path"].startswith(f"s3://{BUCKET}/{experiment}/") for t in summary["trials"])
    best_arch = json.loads(cluster.read(f"{experiment}/best_arch.json"))
    assert len(best_arch["enc"]) == 2 and len(best_arch["dec"]) == 2  # the smoke supernet's depths
    cards = [k for k in cluster.keys("experiments/datasets/") if k.endswith("/dataset.json")]
    assert len(cards) == 1 and json.loads(cluster.read(cards[0]))["source"]["scenes"]["num_scenes"] == 80


def test_no_credential_in_the_clusters_logs_or_state_api_after_the_jobs(cluster):
    """Runs last in this module: the jobs above ran with canary credentials in the nodes' environment."""
    from ray.util.state import list_actors

    actors = list_actors(address=cluster.dashboard, detail=True, limit=10000, raise_on_missing_output=False)
    assert len(actors) >= 4  # the trials' actors (and the jobs' supervisors), dead ones included
    assert [m for m in CANARY_MARKERS if m in str(actors)] == []  # what `ray list actors --detail` shows
    assert list(Path(cluster.temp_dir).glob("*/session_*/logs/runtime_env_agent.log"))  # where Ray wrote them
    assert grep_tree(cluster.temp_dir) == []
