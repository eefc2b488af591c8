"""A search whose driver is killed with ``kill -9`` at several points resumes every time.

The driver (a subprocess joined to the session's Ray) runs two toy trials of six epochs, one
checkpoint kept per trial (Ray deletes the previous one as soon as the next is written, while it
saves the experiment state only every few seconds: the state can name a deleted checkpoint).
It is killed after 1, 4 and 7 epochs' checkpoints exist and resubmitted each time, then left to
finish. Checked: every resume succeeds; no epoch whose checkpoint was whole at a kill is computed
again (every later start is at or after it); the trials end exactly where an uninterrupted run
ends; the job's files hold no canary credential, and neither do Ray's logs or actor records.
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
LRS = (0.2, 0.5)
KILL_AFTER = (1, 4, 7)  # whole checkpoints in storage (both trials together) when the driver is killed
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
            context.report({"epoch": epoch, "loss": 0.5 * state["w"] ** 2, "sees_key": sees_key}, Path(ckpt))


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
        checkpoints_to_keep=1,
    )
    outcome = run_experiment(slow_toy, SlowConfig, {}, settings, epochs_key="train.epochs", verbose=0)
    print("RESULT", json.dumps({"completed": outcome.summary.count("completed"), "resumed": outcome.resumed,
                                "errors": len(outcome.results.errors)}), flush=True)


def whole_epochs(exp: Path) -> dict[str, int]:
    """Trial directory name -> the newest epoch with a whole checkpoint in storage."""
    from pyarrow.fs import LocalFileSystem

    from mmsearch.orchestration.checkpoints import newest_complete

    found = {}
    for trial in (p for p in exp.iterdir() if p.is_dir() and p.name.startswith("slow_toy")):
        newest = newest_complete(LocalFileSystem(), str(trial))
        found[trial.name] = newest[2]["epoch"] if newest and newest[2] else 0
    return found


def starts(exp: Path) -> dict[str, set[str]]:
    return {t.name: {p.name for p in t.glob("start_*.txt")} for t in exp.iterdir() if t.is_dir() and t.name.startswith("slow_toy")}


@pytest.mark.ray
@pytest.mark.slow
def test_driver_killed_at_several_points_resumes_without_losing_or_redoing_an_epoch(ray_session, tmp_path):
    address = ray_session.get_runtime_context().gcs_address
    command = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(TESTS)!r}); import {__name__} as t; "
               f"t.drive({str(tmp_path)!r}, {address!r})"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    exp = tmp_path / "killed"
    kills, survived, logs = 0, 0, []
    floor: dict[str, int] = {}  # trial -> newest whole epoch at the last kill
    seen: dict[str, set[str]] = {}
    for kill_after in (*KILL_AFTER, None):
        driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while kill_after is not None and driver.poll() is None:
            assert time.monotonic() < deadline, "the driver made no progress"
            if exp.exists() and sum(whole_epochs(exp).values()) >= kill_after:
                driver.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
        out, _ = driver.communicate(timeout=180)
        print("DRIVER", kill_after, round(time.monotonic() - deadline + 120, 1), flush=True)
        logs.append(out)
        # Starts since the previous kill never go back before what was whole then.
        for trial, names in starts(exp).items():
            for name in names - seen.get(trial, set()):
                assert int(name[6:9]) >= floor.get(trial, 0), (trial, name, floor, out[-3000:])
        seen = starts(exp)
        if kill_after is None:
            assert driver.returncode == 0, out[-5000:]
            break
        assert driver.returncode == -signal.SIGKILL, f"the run ended before the kill at {kill_after}:\n{out[-3000:]}"
        kills += 1
        time.sleep(1.0)  # the killed driver's trial actors go with it
        floor = whole_epochs(exp)
        if len(logs) > 1:
            survived += 1  # the previous resume ran until this kill
    survived += 1  # the last resume finished
    result = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
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
    assert all(r["sees_key"] == 1.0 for r in _last_results(exp))  # trials found the key in their node's env
    session_dir = ray_session._private.worker._global_node.get_session_dir_path()
    assert canary_hits(session_dir, address) == [] and canary_hits(tmp_path, None) == []
    print(f"kills survived: {survived}/{kills}; fallbacks: {sum('resuming from' in log for log in logs)}")


def _last_results(exp: Path) -> list[dict]:
    rows = []
    for trial in exp.iterdir():
        if trial.is_dir() and (trial / "result.json").exists():
            rows.append(json.loads((trial / "result.json").read_text().splitlines()[-1]))
    return rows
