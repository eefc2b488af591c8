"""TuneContext's checks of the recipe contract (outside a trial: the checks come before Ray is called)."""
from __future__ import annotations

import pytest

from mmsearch.orchestration.tune_context import CHECKPOINT_SCORE, ReportError, TuneContext, checkpoint_score
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


def test_the_checkpoint_score_is_the_metric_of_selectable_epochs_only():
    assert checkpoint_score({"epoch": 3, "val_metric": 41.5, "warmup": 0}, "val_metric") == 41.5
    assert checkpoint_score({"epoch": 3, "val_metric": 41}, "val_metric") == 41.0  # no warm-up marker: selectable
    for unselectable in ({"val_metric": 43.5, "warmup": 1}, {"loss": 1.0}, {"val_metric": True}, {"val_metric": "x"},
                        {"val_metric": float("inf")}):
        score = checkpoint_score(unselectable, "val_metric")
        assert score != score, unselectable  # NaN


@pytest.mark.parametrize("mode", ["max", "min"])
def test_ray_ranks_a_warm_up_epochs_nan_score_below_every_number(mode):
    """What the retention relies on: Ray's checkpoint manager (the one a Tune trial keeps its
    checkpoints with) orders a NaN score below every number, in either mode."""
    from ray.train import CheckpointConfig
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.train._internal.session import _TrainingResult

    manager = _CheckpointManager(CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=CHECKPOINT_SCORE,
                                                  checkpoint_score_order=mode))
    sign = 1.0 if mode == "max" else -1.0
    reports = {1: {"v": sign * 90.0, "warmup": 1}, 2: {"v": sign * 50.0, "warmup": 0}, 3: {"v": sign * 10.0, "warmup": 0}}

    def rank(epoch: int):
        return manager._get_checkpoint_score(_TrainingResult(None, {CHECKPOINT_SCORE: checkpoint_score(reports[epoch], "v")}))

    assert sorted(reports, key=rank) == [1, 3, 2]  # worst first: the warm-up epoch, though its metric is the best
