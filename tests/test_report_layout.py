"""Synthetic experiment directories in Ray Tune's layout (for the report tests), and the reading
of that layout: trial states, torn result files, retried epochs, trials Tune has not listed yet.

:func:`write_experiment` writes what a real mmsearch experiment leaves in storage: the mmsearch
state (experiment spec, ASHA decisions), Tune's ``experiment_state-*.json`` (trial statuses as
``Trial.get_json_state`` writes them), and per trial ``result.json``, ``params.json``,
``error.txt``, checkpoints and the files the search recipe mirrors (``arch_history.json``).
The shapes were taken from a real run of ``run_experiment`` (Ray 2.60); the toy-recipe test in
``test_report_build.py`` checks the reader against such a run.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmsearch.storage import resolve_storage
from mmsearch.report import tune_files as tf
from mmsearch.report.collect import ReportError, collect_experiment

ENC_POOL = ["self_att", "feed_forward"]
DEC_POOL = ["self_att", "rel_self_att", "guided_att", "feed_forward"]


@dataclasses.dataclass
class FakeTrial:
    trial_id: str
    status: str  # Tune status: TERMINATED / ERROR / RUNNING / PENDING; "UNLISTED" = not in Tune's snapshot yet
    metrics: list[float]  # the metric at epochs 1, 2, ...
    config: dict[str, Any]
    extra: list[dict[str, Any]] | None = None  # more keys per epoch
    error: str | None = None
    torn_last_line: bool = False  # a running trial writing its next report
    arch: bool = False  # write search artefacts (arch_history.json, checkpoints with arch.json)
    depths: tuple[int, int] = (3, 5)

    @property
    def dirname(self) -> str:
        params = ",".join(f"{k.replace('.', '_')}={v}" for k, v in self.config.items())
        return f"run_search_{self.trial_id}_{int(self.trial_id[-5:])}_{params}_2026-01-01_00-00-00"


def arch_entry(epoch: int, seed: int, depths: tuple[int, int]) -> dict[str, Any]:
    """A recorded architecture: random block distributions and their argmax ops."""
    rng = np.random.default_rng([seed, epoch])
    probs = {}
    ops = {}
    for chain, pool, depth in (("enc", ENC_POOL, depths[0]), ("dec", DEC_POOL, depths[1])):
        matrix = rng.dirichlet(np.ones(len(pool)) * 0.7, size=depth)
        probs[chain] = matrix.tolist()
        ops[chain] = [[pool[i]] for i in matrix.argmax(axis=1)]
    return {"enc": ops["enc"], "dec": ops["dec"], "probs": probs, "op_pools": {"enc": ENC_POOL, "dec": DEC_POOL},
            "seed": seed, "epoch": epoch, "task": "vqa"}


def arch_history(trial: FakeTrial) -> dict[str, Any]:
    return {f"epoch{e}": arch_entry(e, int(trial.trial_id[-1]), trial.depths) for e in range(1, len(trial.metrics) + 1)}


def write_experiment(root: Path, trials: list[FakeTrial], *, metric: str = "val_metric", mode: str = "max", max_t: int = 6,
                     rungs: tuple[float, ...] = (2.0, 4.0), stopped: tuple[str, ...] = (), task: str | None = "vqa") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    spec = {"recipe": "run_search", "metric": metric, "mode": mode, "max_t": max_t, "rungs": list(rungs),
            "searcher": "random", "scheduler": {"name": "asha" if rungs else "fifo", "grace_period": 2, "reduction_factor": 2.0},
            "base_config": {"data": {"task": task}, "search": {"warmup_epochs": 1}} if task else {}}
    (root / "mmsearch_state").mkdir(exist_ok=True)
    (root / tf.SPEC_FILE).write_text(json.dumps(spec))
    (root / tf.ASHA_STATE_FILE).write_text(json.dumps({"format": "mmsearch.asha_state/1", "stopped_by_asha": {t: 2 for t in stopped}}))
    trial_data = []
    for trial in trials:
        if trial.status != "UNLISTED":
            state = {"trial_id": trial.trial_id, "status": trial.status, "config": trial.config, "relative_logdir": trial.dirname,
                     "storage": {"_type": "CLOUDPICKLE_FALLBACK", "value": "80"}}
            runtime = {"error_filename": "error.txt" if trial.error else None, "last_result": {}}
            trial_data.append([json.dumps(state), json.dumps(runtime)])
        _write_trial(root / trial.dirname, trial, metric)
    (root / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": trial_data, "runner_data": {}}))
    (root / "experiment_state-2025-12-31_00-00-00.json").write_text(json.dumps({"trial_data": []}))  # an older snapshot
    return root


def _write_trial(path: Path, trial: FakeTrial, metric: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "params.json").write_text(json.dumps(trial.config))
    lines = []
    for epoch, value in enumerate(trial.metrics, start=1):
        row = {"epoch": epoch, metric: value, "time_total_s": 1.5 * epoch, "training_iteration": epoch,
               "trial_id": trial.trial_id, "config": trial.config, **((trial.extra or [{}] * epoch)[epoch - 1])}
        lines.append(json.dumps(row))
    text = "\n".join(lines) + "\n"
    if trial.torn_last_line:
        text += '{"epoch": %d, "%s": 0.5, "time_tot' % (len(trial.metrics) + 1, metric)
    (path / "result.json").write_text(text)
    if trial.error:
        (path / "error.txt").write_text(f"Traceback (most recent call last):\n  File x\n{trial.error}\n")
    if trial.arch and trial.metrics:
        history = arch_history(trial)
        (path / "arch_history.json").write_text(json.dumps(history))
        best_epoch = int(np.argmax(trial.metrics)) + 1
        for epoch in range(max(1, len(trial.metrics) - 1), len(trial.metrics) + 1):
            checkpoint = path / f"checkpoint_{epoch - 1:06d}"
            checkpoint.mkdir(exist_ok=True)
            (checkpoint / "arch.json").write_text(json.dumps(history[f"epoch{epoch}"]))
            (checkpoint / "best_arch.json").write_text(json.dumps(history[f"epoch{best_epoch}"]))


# ------------------------------------------------------------------------------ reading


def test_result_rows_skip_a_torn_line_and_keep_the_latest_report_of_a_retried_epoch(tmp_path):
    (tmp_path / "result.json").write_text(
        '{"epoch": 1, "m": 1.0, "config": {"a": 1}}\n{"epoch": 2, "m": 2.0}\n{"epoch": 2, "m": 2.5}\n{"epoch": 3, "m": 3'
    )
    rows = tf.read_results(resolve_storage(str(tmp_path)))
    assert [r["m"] for r in rows] == [1.0, 2.0, 2.5] and "config" not in rows[0]
    assert [r["m"] for r in tf.by_epoch(rows)] == [1.0, 2.5]


def test_progress_csv_is_the_fallback(tmp_path):
    (tmp_path / "progress.csv").write_text("epoch,m,config/lr,done\n1,0.5,0.1,False\n2,,0.1,True\n")
    rows = tf.read_results(resolve_storage(str(tmp_path)))
    assert rows == [{"epoch": 1, "m": 0.5, "done": False}, {"epoch": 2, "m": None, "done": True}]


def test_trial_ids_from_tune_directory_names():
    assert tf.trial_id_from_dirname("run_search_074fd_00003_3_search_arch_lr=0.0106,seed=3_2026-11-23_11-28-55") == "074fd_00003"
    assert tf.trial_id_from_dirname("fusemix_trial_74d0a4d5_1_loss_mixup_alpha=0.0000,optim_lr=0.0011_2026-11-23_12-01-14") == "74d0a4d5"
    assert tf.trial_id_from_dirname("mmsearch_state") is None and tf.trial_id_from_dirname("retrain") is None


def test_collect_every_kind_of_trial(tmp_path):
    trials = [
        FakeTrial("abcde_00000", "TERMINATED", [10, 20, 30, 40, 50, 60], {"seed": 0}, arch=True),
        FakeTrial("abcde_00001", "TERMINATED", [5, 6], {"seed": 1}, arch=True),
        FakeTrial("abcde_00002", "ERROR", [7, 8, 9], {"seed": 2}, error="ValueError: loss is NaN at epoch 4"),
        FakeTrial("abcde_00003", "RUNNING", [12, 25, 33], {"seed": 3}, torn_last_line=True, arch=True),
        FakeTrial("abcde_00004", "UNLISTED", [4], {"seed": 4}),
        FakeTrial("abcde_00005", "PENDING", [], {"seed": 5}),
        FakeTrial("abcde_00006", "TERMINATED", [1, 2, 3, 4], {"seed": 6}),
    ]
    root = write_experiment(tmp_path / "exp", trials, stopped=("abcde_00001",))
    data = collect_experiment(str(root))
    got = {t.trial_id: t for t in data.trials}
    assert list(got) == [t.trial_id for t in trials]
    assert {k: t.stop_reason for k, t in got.items()} == {
        "abcde_00000": "completed", "abcde_00001": "stopped_by_asha", "abcde_00002": "errored",
        "abcde_00003": "unfinished", "abcde_00004": "unfinished", "abcde_00005": "unfinished", "abcde_00006": "stopped",
    }
    assert got["abcde_00004"].status == "UNKNOWN" and got["abcde_00004"].config == {"seed": 4}  # from params.json
    assert [t.rung_reached for t in got.values()] == [6.0, 2.0, 2.0, 2.0, None, None, 4.0]
    assert (got["abcde_00003"].last_epoch, got["abcde_00003"].best_metric, got["abcde_00003"].best_epoch) == (3, 33.0, 3)
    assert got["abcde_00002"].error == "ValueError: loss is NaN at epoch 4"
    assert got["abcde_00000"].checkpoint.endswith("/checkpoint_000005")
    assert got["abcde_00000"].arch_history == arch_history(trials[0])
    assert data.best_trial.trial_id == "abcde_00000" and data.kind == "search" and not data.finished
    assert (data.metric, data.mode, data.max_t, data.rungs) == ("val_metric", "max", 6, [2.0, 4.0])


def test_minimising_experiments_pick_the_lowest(tmp_path):
    trials = [FakeTrial("aaaaa_00000", "TERMINATED", [3.0, 2.0], {}), FakeTrial("aaaaa_00001", "TERMINATED", [4.0, 1.0], {})]
    data = collect_experiment(str(write_experiment(tmp_path, trials, metric="loss", mode="min", max_t=2, rungs=())))
    assert data.best_trial.trial_id == "aaaaa_00001" and data.best_trial.best_metric == 1.0
    assert data.kind == "generic" and data.finished and all(t.rung_reached is None for t in data.trials)


def test_not_an_experiment(tmp_path):
    with pytest.raises(ReportError, match="not an mmsearch experiment directory"):
        collect_experiment(str(tmp_path))
