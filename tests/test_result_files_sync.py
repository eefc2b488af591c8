"""A trial retried after a failure keeps every reported row: Ray's loggers copy the trial's result
files back from storage when the retry starts, so they must be in storage by then."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pyarrow.fs as pafs


def test_result_files_reach_storage_before_the_retry(tmp_path):
    from mmsearch.orchestration.checkpoints import ResultFilesToStorage

    local, remote = tmp_path / "driver" / "trial_0", tmp_path / "storage" / "exp" / "trial_0"
    local.mkdir(parents=True)
    (local / "result.json").write_text('{"epoch": 1}\n')
    (local / "progress.csv").write_text("epoch\n1\n")
    remote.mkdir(parents=True)
    (remote / "result.json").write_text("")  # what the last periodic upload left: no row yet
    trial = SimpleNamespace(local_path=str(local),
                            storage=SimpleNamespace(storage_filesystem=pafs.LocalFileSystem(), trial_fs_path=remote.as_posix()))

    ResultFilesToStorage().on_trial_recover(iteration=3, trials=[trial], trial=trial)

    assert (remote / "result.json").read_text() == '{"epoch": 1}\n'
    assert (remote / "progress.csv").read_text() == "epoch\n1\n"
    assert Path(local / "result.json").read_text() == '{"epoch": 1}\n'  # the driver's copy untouched
