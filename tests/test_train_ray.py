"""Derived-architecture training under Ray Train with 2 CPU workers: DDP (disjoint shards, weights in
sync, resume on resubmission) and DeepSpeed ZeRO-2 (every rank's checkpoint shard, recovery from a
worker killed mid-run). Each fit costs 20-60 s on 2 cores, so there are three."""
from __future__ import annotations

import functools
import json
import os
import sys
import time
from pathlib import Path

import pytest
from ray import cloudpickle

from mmsearch.data.synthetic import SyntheticTaskData
from mmsearch.nas import ArchSpec, save_arch_spec
from mmsearch.orchestration.train import HANDOFF_FILE, fit_derived, train_best_architecture
from mmsearch.recipes.train_derived.outputs import evaluate_checkpoint
from mmsearch.recipes.train_derived.data import part_collator

pytestmark = [pytest.mark.ray, pytest.mark.slow]
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's cloudpickle: workers cannot import this module

ROOT = Path(__file__).resolve().parents[1]
TRAIN_IMAGES, BATCH, WORKERS = 60, 16, 2  # 120 samples: 60 per worker, 3 batches of 16 per epoch
STEPS_PER_EPOCH = TRAIN_IMAGES * 2 // WORKERS // BATCH


class RecordingData:
    """Synthetic VQA data that logs the train positions each Ray Train rank collates (one line per
    batch) and, with ``crash_at_call``, kills rank 1's worker process once at that batch, as soon
    as Ray Train has recorded the epoch-1 checkpoint in ``snapshot`` (the controller collects
    reports every 2 s; a worker dying sooner after a report takes that report with it)."""

    def __init__(self, log_dir: str, crash_at_call: int | None = None, snapshot: str = "") -> None:
        self.inner = SyntheticTaskData("vqa", train_images=TRAIN_IMAGES, val_images=10, test_images=10)
        self.info = self.inner.info
        self.log_dir, self.crash_at_call, self.snapshot, self.calls = Path(log_dir), crash_at_call, Path(snapshot), 0

    def num_samples(self, part):
        return self.inner.num_samples(part)

    def batches(self, part, **kwargs):
        return self.inner.batches(part, **kwargs)

    def collate_rows(self, part, positions):
        import ray.train

        rank = ray.train.get_context().get_world_rank()
        self.calls += 1
        with open(self.log_dir / f"rank{rank}.jsonl", "a") as fh:
            fh.write(json.dumps([int(p) for p in positions]) + "\n")
        marker = self.log_dir / "crashed"
        if rank == 1 and self.calls == self.crash_at_call and not marker.exists():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and '"epoch":1' not in (self.snapshot.read_text() if self.snapshot.is_file() else ""):
                time.sleep(0.2)
            marker.touch()
            os._exit(1)  # a hard worker death, mid-epoch
        return part_collator(self.inner, part)(positions)


def seen(log_dir: Path, rank: int) -> list[list[int]]:
    return [json.loads(line) for line in (log_dir / f"rank{rank}.jsonl").read_text().splitlines()]


def ray_config(tmp_path: Path, name: str, **sections) -> dict:
    base = {
        "arch": {"enc": [["self_att"], ["feed_forward"]], "dec": [["rel_self_att"], ["guided_att"], ["feed_forward"]]},
        "data": {"root": "synthetic", "task": "vqa"},
        "model": {"hidden": 32, "head_dim": 16, "word_dim": 16},
        "head": {"task": "vqa", "flat_mlp_size": 32},
        "optim": {"lr": 3e-3, "lr_decay_epochs": []},
        "train": {"epochs": 2, "batch_size": BATCH, "num_threads": 1},
        "eval": {"batch_size": 64},
        # 2 x 0.5 CPU: the other CPU stays free for the Ray Train controller and Ray Data's split.
        "scaling": {"num_workers": WORKERS, "cpus_per_worker": 0.5, "deepspeed_shm_op": False},
        "run": {"name": name, "storage_path": str(tmp_path / "storage"), "max_failures": 1},
    }
    for key, value in sections.items():
        base[key] = {**base[key], **value} if isinstance(base.get(key), dict) and isinstance(value, dict) else value
    return base


def history(outputs: str) -> list[dict]:
    return json.loads((Path(outputs) / "train_result.json").read_text())["history"]


def test_ddp_disjoint_shards_synchronised_weights_and_resume_on_resubmission(ray_session, tmp_path):
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    factory = functools.partial(RecordingData, str(log_dir))
    # A finished search's output directory, handed to training (the --then-train path).
    search = tmp_path / "search_vqa"
    searched = ArchSpec(enc=("self_att", "feed_forward"), dec=("rel_self_att", "guided_att", "feed_forward"))
    save_arch_spec(searched, search / "best_arch.json")
    (search / "search_result.json").write_text(json.dumps({"metric": "val_vqa_acc", "best_val_metric": 12.5, "best_epoch": 3}))
    comparison = train_best_architecture(search, ray_config(tmp_path, "ddp"), task_data_factory=factory)
    assert comparison["searched"]["value"] == 12.5 and comparison["arch"]["dec"] == list(searched.dec)
    outputs = Path(comparison["outputs"])
    assert json.loads((outputs / HANDOFF_FILE).read_text()) == comparison
    first = json.loads((outputs / "train_result.json").read_text())
    assert first["epochs"] == 2 and first["test"]["vqa_acc"] == comparison["retrained_test"]
    rank0, rank1 = seen(log_dir, 0), seen(log_dir, 1)
    assert len(rank0) == len(rank1) == 2 * STEPS_PER_EPOCH
    for epoch in range(2):
        mine = [set(sum(batches[epoch * STEPS_PER_EPOCH:(epoch + 1) * STEPS_PER_EPOCH], [])) for batches in (rank0, rank1)]
        assert len(mine[0]) == len(mine[1]) == STEPS_PER_EPOCH * BATCH
        assert not mine[0] & mine[1]  # the ranks train on disjoint samples
    assert [m["weight_sync_spread"] for m in first["history"]] == [0.0, 0.0]  # bitwise identical weights
    checkpoint = max((tmp_path / "storage" / "ddp").glob("checkpoint_2*"))
    assert {"model.pt", "optimizer.pt", "train_state.pt", "arch.json", "config.yaml"} <= {p.name for p in checkpoint.iterdir()}
    assert sorted(p.name for p in (checkpoint / "rng").iterdir()) == ["rank_00000.pt", "rank_00001.pt"]  # merged ranks
    assert (outputs / "predictions" / "test_vqa_results.json").is_file()

    # The same job submitted again with one more epoch resumes after epoch 2 instead of starting over.
    second = fit_derived(ray_config(tmp_path, "ddp", arch=str(search), train={"epochs": 3}), task_data_factory=factory)
    assert second.metrics["epoch"] == 3 and second.metrics["resumed_from_epoch"] == 2
    assert len(seen(log_dir, 0)) == len(seen(log_dir, 1)) == 3 * STEPS_PER_EPOCH  # only epoch 3 was trained
    assert [m["epoch"] for m in history(second.outputs)] == [1, 2, 3]


def test_deepspeed_zero2_checkpoints_every_rank_and_recovers_from_a_worker_failure(ray_session, tmp_path):
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    crash_in_epoch_2 = STEPS_PER_EPOCH + 1  # rank 1's first batch of epoch 2
    snapshot = tmp_path / "storage" / "zero2" / "checkpoint_manager_snapshot.json"
    factory = functools.partial(RecordingData, str(log_dir), crash_in_epoch_2, str(snapshot))
    cfg = ray_config(tmp_path, "zero2", train={"epochs": 3}, deepspeed=str(ROOT / "configs" / "deepspeed" / "zero2_fp32.json"))
    result = fit_derived(cfg, task_data_factory=factory)
    assert (log_dir / "crashed").exists()
    assert result.metrics["epoch"] == 3 and result.metrics["resumed_from_epoch"] == 1  # restarted from epoch 1's checkpoint
    losses = [m["train_loss"] for m in history(result.outputs)]
    assert len(losses) == 3 and losses[-1] < losses[0]
    checkpoint = Path(result.checkpoint)
    shards = sorted(p.name for p in (checkpoint / "deepspeed" / "state").iterdir())
    assert shards == ["mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"]
    # The gathered fp32 weights evaluate without DeepSpeed to the metric the run reported.
    data = RecordingData(str(log_dir)).inner
    evaluated = evaluate_checkpoint(checkpoint, splits=("test",), task_data=data, output_dir=tmp_path / "eval", device="cpu")
    assert evaluated["test"]["vqa_acc"] == pytest.approx(result.metrics["test_vqa_acc"])



def test_a_quiet_job_asks_ray_train_for_warnings_only(tmp_path, monkeypatch):
    """Ray Train sets its loggers up itself in its controller and workers (levels set earlier do not
    hold there), so a quiet job passes its own knob: no 'Checkpoint successfully created' or
    'Reporting training result' line per epoch; --verbose keeps Ray's INFO."""
    from types import SimpleNamespace

    from mmsearch.config import load_config
    from mmsearch.orchestration import quiet
    from mmsearch.orchestration.train import run_config
    from mmsearch.recipes.train_derived.config import TrainDerivedConfig

    prepared = SimpleNamespace(config=load_config(TrainDerivedConfig, ray_config(tmp_path, "quiet")), name="quiet")
    for verbose, level in ((False, "WARNING"), (True, "INFO")):
        monkeypatch.setenv(quiet.VERBOSE_ENV, "1" if verbose else "0")  # what the job's --verbose sets
        assert run_config(prepared).logging_config.log_level == level
