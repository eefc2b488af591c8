"""A search whose driver is killed with ``kill -9`` at several points resumes every time.

The driver (a subprocess joined to the session's Ray) runs two toy trials of six epochs, one
checkpoint kept per trial (Ray deletes the previous one as soon as the next is written, while it
saves the experiment state only every few seconds: the state can name a deleted checkpoint).
It is killed after 1, 4 and 7 epochs' checkpoints exist and resubmitted each time, then left to
finish. Checked: every resume succeeds; every epoch is in each trial's results (none lost); a
trial whose last epoch was recorded at a kill computes nothing again; the trials end exactly
where an uninterrupted run ends; ``best_trial.json`` names the best epoch's checkpoint (kept) and the latest, and Ray's
``get_best_result(scope="all")`` / ``get_best_checkpoint`` agree with it; the job's files hold no
canary credential, and neither do Ray's logs or actor records.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from canary import CANARY_CREDENTIALS, canary_hits

from mmsearch.config import config_dataclass

EPOCHS = 6
BEST_EPOCH = 4
LRS = (0.2, 0.5)
KILL_AFTER = (1, 4, 7)  # whole checkpoints in storage (both trials together) when the driver is killed
RACE_AT = 4  # after this kill, the race of issue 12 §2 is made certain (see make_state_name_a_deleted_checkpoint)
TESTS = Path(__file__).resolve().parent


@config_dataclass
class SlowTrain:
    lr: float = 0.2
    epochs: int = EPOCHS
    seconds_per_epoch: float = 0.3


@config_dataclass
class SlowConfig:
    train: SlowTrain = SlowTrain()


def slow_toy(cfg: SlowConfig, context) -> None:
    """w <- w (1 - lr) per epoch from w = 4; checkpoints (epoch, w); a start file per invocation."""
    import tempfile

    state = {"epoch": 0, "w": 4.0}
    restored = context.restored_checkpoint()
    if restored is not None:
        state = json.loads((Path(restored) / "state.json").read_text())
    (context.output_dir / f"start_{state['epoch']:03d}_{uuid.uuid4().hex[:8]}.txt").write_text("started\n")
    sees_key = float(os.environ.get("AWS_ACCESS_KEY_ID") == CANARY_CREDENTIALS["AWS_ACCESS_KEY_ID"])
    for epoch in range(state["epoch"] + 1, cfg.train.epochs + 1):
        time.sleep(cfg.train.seconds_per_epoch)
        state = {"epoch": epoch, "w": state["w"] * (1 - cfg.train.lr)}
        with tempfile.TemporaryDirectory() as ckpt:
            (Path(ckpt) / "state.json").write_text(json.dumps(state))
            loss = 0.5 * state["w"] ** 2 + (1.0 if epoch > BEST_EPOCH else 0.0)  # the best epoch is not the last
            context.report({"epoch": epoch, "loss": loss, "sees_key": sees_key}, Path(ckpt))


def drive(storage: str, address: str) -> None:
    """The job's driver: join the session Ray and run (or resume) the experiment."""
    import ray
    import ray.cloudpickle

    from mmsearch.orchestration.experiment import run_experiment
    from mmsearch.orchestration.settings import ResourceSettings, SchedulerSettings, TuneSettings

    ray.init(address=address, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    settings = TuneSettings(
        experiment_name="killed", metric="loss", mode="min", storage_path=storage,
        search_space={"train.lr": {"grid": list(LRS)}}, scheduler=SchedulerSettings(name="fifo"),
        resources=ResourceSettings(cpus_per_trial=0.5, reserve_cpus_for_data=0.0), max_failures=0,
        checkpoints_to_keep=2,
    )
    outcome = run_experiment(slow_toy, SlowConfig, {}, settings, epochs_key="train.epochs", verbose=0)
    print("RESULT", json.dumps({"completed": outcome.summary.count("completed"), "resumed": outcome.resumed,
                                "errors": len(outcome.results.errors), "best_path": outcome.best_result().path}), flush=True)


def recorded_epochs(exp: Path) -> dict[str, list[int]]:
    """Trial directory name -> the epochs in its result.json in storage."""
    found = {}
    for trial in (p for p in exp.iterdir() if p.is_dir() and p.name.startswith("slow_toy")):
        lines = (trial / "result.json").read_text().splitlines() if (trial / "result.json").exists() else []
        found[trial.name] = [json.loads(line)["epoch"] for line in lines if line.strip()]
    return found


def whole_epochs(exp: Path) -> dict[str, int]:
    """Trial directory name -> the newest epoch with a whole checkpoint in storage."""
    from pyarrow.fs import LocalFileSystem

    from mmsearch.orchestration.checkpoints import newest_complete

    found = {}
    for trial in (p for p in exp.iterdir() if p.is_dir() and p.name.startswith("slow_toy")):
        newest = newest_complete(LocalFileSystem(), str(trial))
        found[trial.name] = newest[2]["epoch"] if newest and newest[2] else 0
    return found


def state_named_checkpoints(exp: Path) -> dict[str, list[str]]:
    """Trial id -> the checkpoint directories the newest saved experiment state names (Tune keeps
    each trial's checkpoint manager in it, pickled and hex-encoded), oldest first."""
    import re

    # Tune resumes from the newest state by file name (its timestamp), as here; not by mtime: a
    # resumed run uploads the older state files again.
    newest = max(exp.glob("experiment_state-*.json"), key=lambda p: p.name)
    named = {}
    for trial_state, runtime in json.loads(newest.read_text())["trial_data"]:
        manager = bytes.fromhex(json.loads(runtime)["checkpoint_manager"]["value"])
        named[json.loads(trial_state)["trial_id"]] = sorted({m.decode() for m in re.findall(rb"checkpoint_\d{6}", manager)})
    return named


def state_names_a_live_checkpoint(exp: Path) -> bool:
    """Whether the newest saved experiment state names a checkpoint still in storage of a trial
    that has not recorded its last epoch (False while no state is saved or one is half written)."""
    try:
        named = state_named_checkpoints(exp)
        recorded = recorded_epochs(exp)
    except (ValueError, KeyError, OSError):
        return False
    return any(names and (exp / trial / names[-1]).is_dir() and EPOCHS not in recorded[trial]
               for trial in recorded for trial_id, names in named.items() if f"_{trial_id}_" in trial)


def make_state_name_a_deleted_checkpoint(exp: Path, finished: set[str]) -> str:
    """Delete the checkpoint the saved experiment state names as an unfinished trial's latest.

    That is what Ray's retention does when it deletes a checkpoint a moment before the driver
    dies, after the experiment state naming it was saved; here it happens at every run. (The
    state is read, not guessed from the results: Ray saves it every few seconds, so it can name
    the checkpoint before the newest.) Returns the trial's directory name.
    """
    import shutil

    recorded = recorded_epochs(exp)
    named = state_named_checkpoints(exp)
    for trial in sorted(t for t in recorded if t not in finished and recorded[t]):
        names = next((n for trial_id, n in named.items() if f"_{trial_id}_" in trial), [])
        if names and (exp / trial / names[-1]).is_dir():
            shutil.rmtree(exp / trial / names[-1])
            return trial
    raise AssertionError(f"no unfinished trial whose saved state names a checkpoint at the kill: {recorded}, {named}")


def starts(exp: Path) -> dict[str, set[str]]:
    return {t.name: {p.name for p in t.glob("start_*.txt")} for t in exp.iterdir() if t.is_dir() and t.name.startswith("slow_toy")}


def driver_process(ray_session, storage: Path, state_period_s: int) -> tuple[list[str], dict[str, str]]:
    """The command and environment of a driver subprocess (:func:`drive`) joined to the session's Ray,
    Tune saving its experiment state every ``state_period_s`` seconds (``TUNE_GLOBAL_CHECKPOINT_S``)."""
    address = ray_session.get_runtime_context().gcs_address
    command = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_resume_after_kill as t; "
               f"t.drive({str(storage)!r}, {address!r})"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")]),
           "TUNE_GLOBAL_CHECKPOINT_S": str(state_period_s)}
    return command, env


@pytest.mark.ray
@pytest.mark.slow
def test_driver_killed_at_several_points_resumes_without_losing_or_redoing_an_epoch(ray_session, tmp_path):
    command, env = driver_process(ray_session, tmp_path, 1)  # the state is saved every second (Tune's default: 10 s at least)
    address = ray_session.get_runtime_context().gcs_address
    exp = tmp_path / "killed"
    kills, survived, logs, dangling = 0, 0, [], ""
    finished: set[str] = set()  # trials whose last epoch was recorded in storage at a kill
    seen: dict[str, set[str]] = {}
    for kill_after in (*KILL_AFTER, None):
        driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while kill_after is not None and driver.poll() is None:
            assert time.monotonic() < deadline, "the driver made no progress"
            ready = exp.exists() and sum(whole_epochs(exp).values()) >= kill_after
            if ready and (kill_after != RACE_AT or state_names_a_live_checkpoint(exp)):
                driver.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
        out, _ = driver.communicate(timeout=180)
        logs.append(out)
        # A trial finished at the previous kill computes nothing again (at most it starts at its last epoch).
        for trial, names in starts(exp).items():
            for name in names - seen.get(trial, set()):
                assert trial not in finished or int(name[6:9]) == EPOCHS, (trial, name, out[-3000:])
        seen = starts(exp)
        if kill_after is None:
            assert driver.returncode == 0, out[-5000:]
            break
        assert driver.returncode == -signal.SIGKILL, f"the run ended before the kill at {kill_after}:\n{out[-3000:]}"
        kills += 1
        time.sleep(1.0)  # the killed driver's trial actors go with it
        finished = {t for t, epochs in recorded_epochs(exp).items() if EPOCHS in epochs}
        if kill_after == RACE_AT:
            dangling = make_state_name_a_deleted_checkpoint(exp, finished)
        if len(logs) > 1:
            survived += 1  # the previous resume ran until this kill
    survived += 1  # the last resume finished
    result = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    best_path = result.pop("best_path")
    assert result == {"completed": 2, "resumed": True, "errors": 0}, out[-5000:]
    assert kills == len(KILL_AFTER) and survived == kills
    for trial in exp.iterdir():
        if trial.is_dir() and trial.name.startswith("slow_toy"):
            params = json.loads((trial / "params.json").read_text())
            newest = whole_epochs(exp)[trial.name]
            state = json.loads((trial / f"checkpoint_{max(int(p.name[11:]) for p in trial.glob('checkpoint_*')):06d}" / "state.json").read_text())
            assert newest == EPOCHS and state == {"epoch": EPOCHS, "w": pytest.approx(4 * (1 - params["train.lr"]) ** EPOCHS)}
    summary = json.loads((exp / "experiment_summary.json").read_text())
    assert [t["last_epoch"] for t in summary["trials"]] == [EPOCHS, EPOCHS]
    assert [t["best_epoch"] for t in summary["trials"]] == [BEST_EPOCH, BEST_EPOCH]
    for trial, epochs in recorded_epochs(exp).items():  # no finished epoch lost from the results
        assert sorted(set(epochs)) == list(range(1, EPOCHS + 1)), (trial, epochs)
    assert _check_best_agrees_with_ray(exp) == best_path  # ExperimentOutcome.best_result() too
    assert all(r["sees_key"] == 1.0 for r in _last_results(exp))  # trials found the key in their node's env
    session_dir = ray_session._private.worker._global_node.get_session_dir_path()
    assert canary_hits(session_dir, address) == [] and canary_hits(tmp_path, None) == []
    fallbacks = sum(log.count("which no longer exists") for log in logs)
    after_race = logs[KILL_AFTER.index(RACE_AT) + 1]
    assert f"_{dangling.split('_')[3]}: the saved experiment state names checkpoint_" in after_race, after_race[-3000:]
    print(f"kills survived: {survived}/{kills}; checkpoint fallbacks: {fallbacks}")


def _last_results(exp: Path) -> list[dict]:
    rows = []
    for trial in exp.iterdir():
        if trial.is_dir() and (trial / "result.json").exists():
            rows.append(json.loads((trial / "result.json").read_text().splitlines()[-1]))
    return rows


def _check_best_agrees_with_ray(exp: Path) -> str:
    from ray.tune import ExperimentAnalysis, ResultGrid

    from mmsearch.orchestration.experiment import summarize_experiment
    from mmsearch.orchestration.jobs.results import write_best_trial
    from mmsearch.storage import StorageLocation

    location = StorageLocation(uri=str(exp))
    record = write_best_trial(location, summarize_experiment(location), {})
    assert record["epoch"] == BEST_EPOCH and record["config"] == {"train.lr": max(LRS)}
    manifest = json.loads((Path(record["checkpoint"]) / "mmsearch_checkpoint.json").read_text())
    assert manifest["epoch"] == BEST_EPOCH and manifest["metrics"]["loss"] == record["value"]
    assert json.loads((Path(record["latest_checkpoint"]) / "mmsearch_checkpoint.json").read_text())["epoch"] == EPOCHS
    best = ResultGrid(ExperimentAnalysis(str(exp))).get_best_result("loss", "min", scope="all")
    assert best.path == record["trial_dir"]
    assert best.get_best_checkpoint("loss", "min").path == record["checkpoint"]
    return record["trial_dir"]
