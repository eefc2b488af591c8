"""A Tune job's driver stopped with SIGTERM (what ``ray job stop`` and Kubernetes send) ends the way
Ctrl+C ends it: Tune saves the experiment state one last time, naming every trial, the driver exits
normally, and a resubmission resumes every trial in its own directory. Before, SIGTERM killed the driver at once and the resume started from the last
periodic state (here made rare: ``TUNE_GLOBAL_CHECKPOINT_S`` is an hour)."""
from __future__ import annotations

import signal
import subprocess
import time

import pytest
import test_resume_after_kill as slow

from mmsearch.orchestration.stop_signal import TUNE_STOP_SIGNAL, sigterm_stops_tune


def test_sigterm_is_tunes_stop_signal_only_inside_the_block():
    received = []
    previous_usr1 = signal.signal(TUNE_STOP_SIGNAL, lambda signum, frame: received.append(signum))
    before = signal.getsignal(signal.SIGTERM)
    try:
        with sigterm_stops_tune():
            signal.raise_signal(signal.SIGTERM)  # would end this test process without the handler
            assert received == [TUNE_STOP_SIGNAL]
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(TUNE_STOP_SIGNAL, previous_usr1)


@pytest.mark.ray
@pytest.mark.slow
def test_a_driver_stopped_with_sigterm_saves_the_state_and_resumes_every_trial_in_place(ray_session, tmp_path):
    # No periodic save during the run (an hour apart): only the stop's save can name checkpoints.
    command, env = slow.driver_process(ray_session, tmp_path, 3600)
    exp = tmp_path / "killed"
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    at_stop: dict[str, int] = {}
    while not (len(at_stop) == 2 and min(at_stop.values()) >= 1):  # both trials have a whole checkpoint
        assert driver.poll() is None and time.monotonic() < deadline, "the driver made no progress"
        time.sleep(0.05)
        at_stop = slow.whole_epochs(exp) if exp.exists() else {}
    stopped_at = time.time()
    driver.send_signal(signal.SIGTERM)
    out, _ = driver.communicate(timeout=120)
    assert driver.returncode == 0, out[-4000:]  # the run ended; it was not killed (without the handler: exit 1 at once)
    assert "Stop signal received" in out, out[-4000:]
    assert max(max(epochs) for epochs in slow.recorded_epochs(exp).values()) < slow.EPOCHS, "the run finished before the stop"

    # Tune saved its state after the signal, naming both trials (the state can trail the checkpoints
    # in storage by a report: the resumed trial then continues from the newest complete one).
    newest = max(exp.glob("experiment_state-*.json"), key=lambda p: p.name)
    assert newest.stat().st_mtime >= stopped_at, "no experiment state saved after the stop"
    assert len(slow.state_named_checkpoints(exp)) == 2

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0 and '"resumed": true' in resumed.stdout and '"completed": 2' in resumed.stdout, resumed.stdout[-4000:]
    # Two trials, two directories (none set up again under a new name); no epoch lost from either.
    recorded = slow.recorded_epochs(exp)
    assert len(recorded) == 2 and all(sorted(set(e)) == list(range(1, slow.EPOCHS + 1)) for e in recorded.values()), recorded
