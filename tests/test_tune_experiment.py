"""run_experiment end to end on the session Ray instance, with the toy recipe.

Covers: checks that fail before any trial starts, concurrency derived from the cluster, a trial
that fails mid-run retried from its last checkpoint (on S3 storage, moto on loopback), the
dashboard metrics callback's counts, and (slow) idempotent resume with ASHA decisions equal to
an uninterrupted run's.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from ray import tune
from test_orchestration_toy_recipe import ToyConfig, register_for_ray, toy_recipe

from mmsearch.config import ConfigError
from mmsearch.orchestration import experiment as experiment_module
from mmsearch.orchestration.asha import SchedulerConfigError
from mmsearch.orchestration.asha_state import STATE_FILE
from mmsearch.orchestration.experiment import (
    ExperimentError,
    derive_max_concurrent_trials,
    plan_experiment,
    run_experiment,
    summarize_experiment,
)
from mmsearch.orchestration.metrics import TrialMetricsCallback
from mmsearch.orchestration.search_space import SearchSpaceError
from mmsearch.orchestration.settings import ResourceSettings, SchedulerSettings, TuneSettings
from mmsearch.storage import StorageError, read_bytes
from mmsearch.orchestration.summary import SUMMARY_FILE


def toy_loss(lr: float, epoch: int) -> float:
    return 0.5 * (4 * (1 - lr) ** epoch) ** 2


def make_settings(storage_path: str, name: str, lrs: list[float], **changes) -> TuneSettings:
    fields = {
        "experiment_name": name,
        "metric": "loss",
        "mode": "min",
        "storage_path": storage_path,
        "search_space": {"train.lr": {"grid": lrs}},
        "scheduler": SchedulerSettings(grace_period=1, reduction_factor=2),
        "resources": ResourceSettings(cpus_per_trial=0.5, reserve_cpus_for_data=0.0),
        "max_failures": 0,
        **changes,
    }
    return TuneSettings(**fields)


def run_toy(settings: TuneSettings, base: dict | None = None, **kwargs):
    base = base or {"train": {"epochs": 4}}
    return run_experiment(toy_recipe, ToyConfig, base, settings, epochs_key="train.epochs", verbose=0, **kwargs)


@pytest.fixture
def toy_on_ray(ray_session):
    register_for_ray()
    return ray_session


# ------------------------------------------------------------------ before any trial starts


@pytest.mark.parametrize(
    ("base", "changes", "error", "message"),
    [
        ({"train": {"epochs": 4, "lr": 9.0}}, {}, ConfigError, r"train.lr must be in \(0, 2\)"),
        ({"train": {"epochs": 4}}, {"search_space": {"train.epochs": {"choice": [2, 4]}}}, ConfigError, "cannot be tuned"),
        ({"train": {"epochs": 4}}, {"search_space": {"train.lrate": {"uniform": [0.1, 0.2]}}}, SearchSpaceError, "train.lrate"),
        ({"train": {"epochs": 4}}, {"scheduler": SchedulerSettings(max_t=8)}, SchedulerConfigError, "max_t=8 does not match"),
        ({"train": {"epochs": 4}}, {"searcher": "optuna"}, SearchSpaceError, "cannot expand grids"),
    ],
)
def test_invalid_experiments_fail_in_planning(tmp_path, base, changes, error, message):
    settings = make_settings(str(tmp_path), "bad", [0.1, 0.2], **changes)
    with pytest.raises(error, match=message):
        plan_experiment(toy_recipe, ToyConfig, base, settings, epochs_key="train.epochs")
    assert not (tmp_path / "bad").exists()


@pytest.fixture
def no_tuner(monkeypatch):
    """Fails the test if anything gets as far as building a Tuner."""

    def refuse(*args, **kwargs):
        raise AssertionError("a Tuner was built although storage is unusable")

    monkeypatch.setattr(experiment_module.tune, "Tuner", refuse)


def test_unreachable_s3_fails_before_any_trial(no_tuner, monkeypatch):
    import socket

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = make_settings("s3://bucket/experiments", "exp", [0.1], s3_endpoint_url=f"http://127.0.0.1:{port}")
    with pytest.raises(StorageError, match=rf"storage s3://bucket/experiments/exp is not usable.*127.0.0.1:{port}"):
        run_toy(settings)


def test_storage_below_a_file_fails_before_any_trial(tmp_path, no_tuner):
    (tmp_path / "plain-file").write_text("x")
    with pytest.raises(StorageError, match="could not create the directory"):
        run_toy(make_settings(str(tmp_path / "plain-file"), "exp", [0.1]))


@pytest.mark.parametrize(
    ("resources", "cluster", "expected"),
    [
        (ResourceSettings(cpus_per_trial=0.5, reserve_cpus_for_data=0.0), {"CPU": 2.0}, 4),
        (ResourceSettings(cpus_per_trial=0.5, reserve_cpus_for_data=1.0), {"CPU": 2.0}, 2),
        (ResourceSettings(cpus_per_trial=1, gpus_per_trial=0.25, reserve_cpus_for_data=2), {"CPU": 16.0, "GPU": 1.0}, 4),
        (ResourceSettings(cpus_per_trial=1, gpus_per_trial=1, reserve_cpus_for_data=1), {"CPU": 8.0, "GPU": 8.0}, 7),
        (ResourceSettings(cpus_per_trial=0.5, max_concurrent_trials=3, reserve_cpus_for_data=0), {"CPU": 2.0}, 3),
        (ResourceSettings(cpus_per_trial=0.3, reserve_cpus_for_data=0.2), {"CPU": 1.1}, 3),
    ],
)
def test_concurrency_derived_from_cluster(resources, cluster, expected):
    assert derive_max_concurrent_trials(resources, cluster) == expected


def test_no_trial_fits_is_an_error():
    with pytest.raises(ExperimentError, match="no trial fits on this cluster \\(2 CPUs, 0 GPUs\\)"):
        derive_max_concurrent_trials(ResourceSettings(cpus_per_trial=1, reserve_cpus_for_data=1.5), {"CPU": 2.0})
    with pytest.raises(ExperimentError, match="0.5 GPUs"):
        derive_max_concurrent_trials(ResourceSettings(gpus_per_trial=0.5, reserve_cpus_for_data=0), {"CPU": 4.0})


# ------------------------------------------------------------------ trials on Ray


@pytest.mark.ray
@pytest.mark.s3
def test_trial_failing_mid_run_is_retried_from_its_last_checkpoint_on_s3(toy_on_ray, s3_server, tmp_path):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server["endpoint"])
    s3.create_bucket(Bucket="tune-retry")
    settings = make_settings(
        "s3://tune-retry/experiments",
        "retry",
        [0.2, 0.5],
        s3_endpoint_url=s3_server["endpoint"],
        scheduler=SchedulerSettings(name="fifo"),
        max_failures=1,
    )
    base = {"train": {"epochs": 3}, "faults": {"fail_at_epoch": 2, "fail_lr": 0.5, "marker_dir": str(tmp_path)}}
    outcome = run_toy(settings, base)

    assert sorted(p.name for p in tmp_path.glob("failed_*")) == ["failed_seed0_lr0.5"]
    table = outcome.summary.table()
    assert outcome.summary.count("completed") == 2 and not outcome.results.errors, table
    for result in outcome.results:
        lr = result.config["train.lr"]
        frame = result.metrics_dataframe
        assert list(frame["epoch"]) == [1, 2, 3], frame  # epoch 2 was reported once, after the retry
        assert list(frame["loss"]) == pytest.approx([toy_loss(lr, e) for e in (1, 2, 3)])  # exact resume
    # The failing trial started twice: from scratch, then from its epoch-1 checkpoint; the other once.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="tune-retry", Prefix="experiments/retry/")["Contents"]]
    starts = {}
    for key in keys:
        if Path(key).name.startswith("start_"):
            starts.setdefault("lr=0.5" in key, []).append(Path(key).name[:9])
    assert sorted(starts[True]) == ["start_000", "start_001"] and starts[False] == ["start_000"], keys
    summary = json.loads(read_bytes(outcome.location.child(SUMMARY_FILE)))
    assert summary["counts"]["completed"] == 2 and summary["best"]["config"] == {"train.lr": 0.5}, summary
    for trial in summary["trials"]:
        assert (trial["checkpoint_path"] or "").startswith("s3://tune-retry/experiments/retry/"), trial
        # the failed-and-restored trial shows as such; the other never failed
        failed = trial["config"] == {"train.lr": 0.5}
        assert (trial["failures"], trial["retries"]) == ((1, 1) if failed else (0, 0)), trial
    assert (summary["failures"], summary["retries"]) == (1, 1)


@pytest.mark.ray
def test_checkpoint_retention_keeps_the_best_searched_epoch_over_a_higher_warm_up_epoch(toy_on_ray, tmp_path):
    """A warm-up epoch (``warmup: 1``) that scores above every searched epoch (as question priors can
    make a search's warm-up epochs do) is never kept over the best searched epoch: with one checkpoint
    to keep, Ray keeps the best searched epoch's and the latest, and the summary points at a kept one."""
    # The loss falls every epoch: maximised, the warm-up epoch 1 scores highest, the best searched epoch is 2.
    settings = make_settings(str(tmp_path), "warmup_keep", [0.5], mode="max", checkpoints_to_keep=1,
                             scheduler=SchedulerSettings(name="fifo"))
    outcome = run_toy(settings, {"train": {"epochs": 3, "warmup_epochs": 1}})

    (trial,) = outcome.summary.trials
    assert (trial.best_epoch, trial.best_metric) == (2, pytest.approx(toy_loss(0.5, 2)))
    assert trial.best_checkpoint_path is not None
    assert json.loads((Path(trial.best_checkpoint_path) / "state.json").read_text())["epoch"] == 2
    kept = sorted(json.loads(p.read_text())["epoch"] for p in Path(trial.path).glob("checkpoint_*/state.json"))
    assert kept == [2, 3]  # the best searched epoch and the latest (for a resume); the warm-up epoch's is gone
    summary = json.loads(read_bytes(outcome.location.child(SUMMARY_FILE)))
    assert (summary["best"]["epoch"], summary["best"]["checkpoint"]) == (2, trial.best_checkpoint_path)
    # Tune's metric is as reported (ASHA and the searchers see it); only the retention score skips the warm-up.
    frame = outcome.results[0].metrics_dataframe
    assert list(frame["loss"]) == pytest.approx([toy_loss(0.5, e) for e in (1, 2, 3)])
    scores = list(frame["checkpoint_score"])
    assert scores[0] != scores[0] and scores[1:] == pytest.approx([toy_loss(0.5, e) for e in (2, 3)])  # NaN, then the loss


class RecordingMetrics(TrialMetricsCallback):
    """Keeps every published count, to check what the gauges showed along the way."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.published = []

    def publish(self, trials):
        counts = super().publish(trials)
        self.published.append(counts)
        return counts


@pytest.mark.ray
def test_metrics_callback_counts_trial_states(toy_on_ray, tmp_path):
    lrs = [0.05, 0.2, 0.4, 0.6]
    settings = make_settings(str(tmp_path), "metrics", lrs)
    base = {"train": {"epochs": 4, "start_together": 2, "sync_dir": str(tmp_path / "sync")},  # two trials surely side by side
            "faults": {"fail_at_epoch": 1, "fail_lr": 0.05}}  # errors before any report
    recorder = RecordingMetrics("metrics-test", metric="loss", mode="min", max_t=4, min_interval_s=0.0)
    outcome = run_toy(settings, base, callbacks=[recorder])

    final = recorder.latest
    summary = outcome.summary
    assert final.errored == 1 == summary.count("errored")
    assert final.finished == summary.count("completed") >= 1
    assert final.stopped_by_asha == summary.count("stopped_by_asha")
    assert final.finished + final.stopped_by_asha + final.errored == len(lrs)
    assert final.running == final.pending == 0
    assert final.best_metric == pytest.approx(toy_loss(0.6, 4)) == pytest.approx(summary.best_trial.best_metric)
    assert max(c.running for c in recorder.published) >= 2  # trials really ran side by side
    assert recorder._gauges is not None  # the Ray gauges were created and set
    # max_failures=0: the errored trial failed once and was not retried; epochs: every trial's last
    assert (final.failures, final.retries) == (1, 0)
    assert final.trial_epochs == sum(t.last_epoch or 0 for t in summary.trials) >= 4
    assert [(t.failures, t.retries) for t in summary.trials if t.stop_reason == "errored"] == [(1, 0)]
    # What cluster/README.md shows for reading results with Ray's own APIs works on this experiment.
    analysis = tune.ExperimentAnalysis(str(tmp_path / "metrics"))
    assert len(analysis.dataframe(metric="loss", mode="min")) == len(lrs) - 1  # the errored trial reported nothing
    best = analysis.get_best_trial("loss", "min", scope="all")
    assert best.config["train.lr"] == 0.6 and best.metric_analysis["loss"]["min"] == pytest.approx(toy_loss(0.6, 4))
    assert sorted(r.metrics.get("epoch", 0) for r in tune.ResultGrid(analysis))[-1] == 4
    # Every series the Grafana dashboard queries is on this node's live Prometheus endpoint,
    # labelled by experiment and storage (Ray exports a driver's gauges within ~10 s).
    from test_grafana_dashboard import queried_series

    # Ray exports what the driver last set on its next export round: wait for the final counts.
    exported = scrape_until(queried_series(), experiment="metrics",
                            settled=lambda found: errored_lines(found) == [" 1.0"])
    for name in queried_series():
        assert f'storage="{tmp_path}"' in exported[name], exported[name]
    assert errored_lines(exported) == [" 1.0"], exported["mmsearch_tune_trials"]
    # The summary can be rebuilt from storage alone (what a report command does).
    rebuilt = summarize_experiment(outcome.location)
    assert rebuilt.to_dict()["trials"] == summary.to_dict()["trials"]


def errored_lines(exported: dict[str, str]) -> list[str]:
    """The value part (" 1.0") of each exported errored-trials line."""
    lines = exported.get("mmsearch_tune_trials", "").splitlines()
    return [line[line.rindex(" "):] for line in lines if 'state="errored"' in line]


def scrape_until(names: set[str], *, experiment: str, timeout_s: float = 40.0, settled=lambda found: True) -> dict[str, str]:
    """The lines of each ``ray_<name>`` series for ``experiment`` on the local node's metrics endpoint,
    once every series is there and ``settled(found)`` holds."""
    import urllib.request

    import ray

    port = next(n["MetricsExportPort"] for n in ray.nodes() if n["Alive"] and n["NodeManagerAddress"] == ray.util.get_node_ip_address())
    deadline, found = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        found = {name: "\n".join(line for line in text.splitlines()
                                 if line.startswith(f"ray_{name}{{") and f'experiment="{experiment}"' in line)
                 for name in names}
        if all(found.values()) and settled(found):
            return found
        time.sleep(1.0)
    raise AssertionError(f"not exported within {timeout_s:g} s: {sorted(n for n, v in found.items() if not v)}")


class InterruptAfter(tune.Callback):
    """Interrupts the experiment after ``n`` results, as Ctrl+C / a stopped job would, once."""

    def __init__(self, n: int, marker: str) -> None:
        self.n, self.marker, self.seen = n, marker, 0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.seen += 1
        if self.seen == self.n and not os.path.exists(self.marker):
            Path(self.marker).write_text("interrupted\n")
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's own graceful-interrupt signal


def decisions(outcome) -> dict[float, tuple[str, float | None, int | None]]:
    return {t.config["train.lr"]: (t.stop_reason, t.rung_reached, t.last_epoch) for t in outcome.summary.trials}


def start_files(exp_dir: Path) -> dict[float, list[str]]:
    found = {}
    for trial_dir in exp_dir.iterdir():
        if (trial_dir / "params.json").exists():
            lr = json.loads((trial_dir / "params.json").read_text())["train.lr"]
            found[lr] = sorted(p.name[:9] for p in trial_dir.glob("start_*.txt"))
    return found


@pytest.mark.ray
@pytest.mark.slow
def test_resumed_experiment_stops_the_same_trials_and_redoes_nothing(toy_on_ray, tmp_path):
    # One trial at a time makes the order of results, hence ASHA's decisions, deterministic.
    lrs = [0.3, 0.5, 0.1, 0.45, 0.2]
    sequential = ResourceSettings(cpus_per_trial=0.5, reserve_cpus_for_data=0, max_concurrent_trials=1)
    reference = run_toy(make_settings(str(tmp_path), "reference", lrs, resources=sequential))
    expected = decisions(reference)
    assert {lr for lr, d in expected.items() if d[0] == "stopped_by_asha"} == {0.1, 0.2}

    # Same experiment, interrupted after 11 results: 0.3 and 0.5 done, 0.1 stopped, 0.45 at epoch 2.
    settings = make_settings(str(tmp_path), "interrupted", lrs, resources=sequential)
    first = run_toy(settings, callbacks=[InterruptAfter(11, str(tmp_path / "interrupted.marker"))])
    assert not first.resumed and first.summary.count("unfinished") == 1
    state_file = tmp_path / "interrupted" / STATE_FILE
    at_interruption = json.loads(state_file.read_text())
    starts_before = start_files(tmp_path / "interrupted")

    second = run_toy(settings)  # resubmitted: resumes
    assert second.resumed
    assert decisions(second) == expected
    final = json.loads(state_file.read_text())
    for saved, now in zip(at_interruption["brackets"][0], final["brackets"][0]):
        assert now["recorded"].items() >= saved["recorded"].items()  # records survived the resume
    starts = start_files(tmp_path / "interrupted")
    for lr in (0.3, 0.5, 0.1):  # finished before the interruption: not run again
        assert starts[lr] == starts_before[lr] == ["start_000"]
    assert starts[0.45][0] == "start_000" and starts[0.45][1] in ("start_001", "start_002")  # from a checkpoint
    assert starts[0.2] == ["start_000"]

    # Submitted once more: nothing left to do, nothing is rerun.
    started = time.monotonic()
    third = run_toy(settings)
    assert third.resumed and decisions(third) == expected
    assert start_files(tmp_path / "interrupted") == starts
    assert time.monotonic() - started < 30

    # Resuming with a different search space is refused instead of silently ignored.
    changed = make_settings(str(tmp_path), "interrupted", [0.3, 0.5], resources=sequential)
    with pytest.raises(ExperimentError, match="search_space"):
        run_toy(changed)


@pytest.mark.ray
def test_optuna_searcher_samples_the_space_under_asha(toy_on_ray, tmp_path):
    settings = make_settings(
        str(tmp_path),
        "optuna",
        [0.1],
        searcher="optuna",
        searcher_seed=3,
        num_samples=4,
        search_space={"train.lr": {"uniform": [0.05, 0.6]}, "train.width": {"choice": [8, 16]}},
        resources=ResourceSettings(cpus_per_trial=0.5, reserve_cpus_for_data=0.0, max_concurrent_trials=2),
    )
    recorder = RecordingMetrics("optuna-test", metric="loss", mode="min", max_t=3, min_interval_s=0.0)
    outcome = run_toy(settings, {"train": {"epochs": 3}}, callbacks=[recorder])
    configs = [t.config for t in outcome.summary.trials]
    assert len(configs) == 4 and len({c["train.lr"] for c in configs}) == 4
    assert all(0.05 <= c["train.lr"] <= 0.6 and c["train.width"] in (8, 16) for c in configs)
    assert max(c.running for c in recorder.published) <= 2  # the concurrency limit held
    assert outcome.summary.count("completed") + outcome.summary.count("stopped_by_asha") == 4
    best = outcome.results.get_best_result("loss", "min", scope="all")  # Ray's own API, the job's notion of best
    assert best.config == outcome.summary.best_trial.config
