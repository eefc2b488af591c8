"""TuneContext's checks of the recipe contract (outside a trial: the checks come before Ray is called)."""
from __future__ import annotations

import pytest

from mmsearch.orchestration.tune_context import ReportError, TuneContext
from mmsearch.recipes.context import RunContext


def test_tune_context_is_a_run_context(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # inside a trial, Tune has changed into the trial's directory
    ctx = TuneContext()
    assert isinstance(ctx, RunContext)
    assert ctx.output_dir == tmp_path and (ctx.rank, ctx.world_size) == (0, 1)


@pytest.mark.parametrize("metrics", [{"loss": 1.0}, {"epoch": 1.0, "loss": 1.0}, {"epoch": True}, {"epoch": "1"}])
def test_reports_need_an_integer_epoch(metrics):
    with pytest.raises(ReportError, match="integer 'epoch'"):
        TuneContext().report(metrics)


def test_epochs_must_increase():
    import numpy as np

    ctx = TuneContext()
    with pytest.warns(UserWarning, match="only be called inside"):  # outside a trial Ray ignores the report
        ctx.report({"epoch": np.int64(2), "loss": 1.0})  # numpy integers are integers
    with pytest.raises(ReportError, match="must increase at every report: 2 after 2"):
        ctx.report({"epoch": 2, "loss": 0.5})


def test_output_files_are_mirrored_to_storage_but_dot_scratch_stays_local(tmp_path, monkeypatch):
    from mmsearch.storage import StorageLocation

    work, store = tmp_path / "work", tmp_path / "store" / "trial_1"
    (work / "plots").mkdir(parents=True)
    (work / ".ckpt-scratch").mkdir()
    (work / "config.yaml").write_text("a: 1\n")
    (work / "plots" / "curve.png").write_bytes(b"\x89PNG")
    (work / ".ckpt-scratch" / "state.pt").write_bytes(b"big")
    monkeypatch.chdir(work)
    ctx = TuneContext(artifacts_to=StorageLocation(str(store)))
    assert ctx.upload_artifacts() == 2
    assert sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file()) == ["config.yaml", "plots/curve.png"]
    assert ctx.upload_artifacts() == 0  # nothing changed
    (work / "config.yaml").write_text("a: 2\n")
    assert ctx.upload_artifacts() == 1 and (store / "config.yaml").read_text() == "a: 2\n"


def test_a_failing_upload_does_not_hide_the_recipes_own_error(tmp_path, monkeypatch):
    from mmsearch.storage import StorageLocation

    (tmp_path / "out.txt").write_text("x")
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.chdir(tmp_path)
    ctx = TuneContext(artifacts_to=StorageLocation(str(tmp_path / "file" / "trial")))  # unwritable
    ctx.close(best_effort=True)  # logged only
    with pytest.raises(OSError):
        TuneContext(artifacts_to=StorageLocation(str(tmp_path / "file" / "trial"))).close()
