"""FuseMix trials read the shared latent store through Ray Data: stream type, every row once per epoch."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmsearch.config import load_config
from mmsearch.data.store import StoreError, StoreWriter, scalar, vector
from mmsearch.orchestration.jobs import trials as jobs_trials
from mmsearch.orchestration.fusemix_streams import ray_stream_factory
from mmsearch.orchestration.jobs.trials import STARTS_DIR, recipe_trial
from mmsearch.recipes.context import LocalContext
from mmsearch.recipes.fusemix.config import FuseMixConfig

pytestmark = pytest.mark.ray

X_DIM, Y_DIM = 12, 8
ROWS = {"train": 240, "val": 40, "test": 40}


def write_pairs(uri: str, split: str, rows: int, seed: int) -> None:
    """Pairs whose text latent is a noisy linear view of the image latent (a learnable signal)."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((rows, X_DIM), dtype=np.float32)
    text = image[:, :Y_DIM] + 0.3 * rng.standard_normal((rows, Y_DIM), dtype=np.float32)
    with StoreWriter(uri, dataset="pairs-test", split=split, row_group_rows=30, shard_rows=90) as writer:
        writer.add_table("pairs", {"image": vector(X_DIM, "float32"), "text": vector(Y_DIM, "float32"),
                                   "image_id": scalar("int64")})
        writer.write_batch("pairs", {"image": image, "text": text, "image_id": np.arange(rows, dtype=np.int64)})


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("fusemix_stores")
    uris = {split: str(root / split) for split in ROWS}
    for seed, (split, rows) in enumerate(ROWS.items()):
        write_pairs(uris[split], split, rows, seed)
    return uris


def config(stores: dict[str, str], **train) -> FuseMixConfig:
    return load_config(FuseMixConfig, {
        "data": {"store": stores["train"], "val_store": stores["val"], "test_store": stores["test"], "backend": "ray"},
        "model": {"out_dim": 8, "x_dim": X_DIM, "y_dim": Y_DIM, "x": {"depth": 1, "width_factor": 1, "dropout": 0.0},
                  "y": {"depth": 1, "width_factor": 1, "dropout": 0.0}},
        "optim": {"warmup_steps": 2},
        "train": {"batch_size": 32, "epochs": 2, "device": "cpu", "num_threads": 1, **train},
        "eval": {"ks": [1, 5]},
    })


def epoch_batches(stream, epoch: int, seed: int = 3) -> tuple[np.ndarray, dict]:
    """The ids of one epoch, in order, and its first batch."""
    batches = list(stream.epoch(epoch, 32, seed))
    return np.concatenate([batch["image_id"].numpy() for batch in batches]), batches[0]


def test_each_epoch_streams_every_row_once_in_a_fresh_order(ray_session, stores):
    from mmsearch.orchestration.ray_data import RayDataStream

    stream = ray_stream_factory(target_block_bytes=4096, local_up_to_bytes=0)(config(stores).data, "train", 0, 1)
    assert isinstance(stream, RayDataStream)
    (first, batch), (second, _) = epoch_batches(stream, 0), epoch_batches(stream, 1)
    for ids in (first, second):
        assert len(ids) == ROWS["train"] and np.array_equal(np.sort(ids), np.arange(ROWS["train"]))
    assert not np.array_equal(first, second)  # reshuffled per epoch
    assert np.array_equal(epoch_batches(stream, 1)[0], second)  # a pure function of (seed, epoch): resumes see the same
    assert batch["image"].dtype == torch.float32 and tuple(batch["image"].shape) == (32, X_DIM)


def test_a_split_that_fits_one_shuffle_window_is_read_without_ray_data(ray_session, stores):
    """Ray Data's fixed cost per read (seconds) buys nothing for a split the heap-side shuffle
    window would hold whole: such a split is read by the plain-pyarrow stream, a larger one streams."""
    from mmsearch.data.store import LocalStoreStream, open_store
    from mmsearch.orchestration.ray_data import DEFAULT_SHUFFLE_WINDOW_BYTES, RayDataStream, stored_bytes

    data = config(stores).data
    size = stored_bytes(open_store(stores["train"]).table("pairs"))
    assert 0 < size <= DEFAULT_SHUFFLE_WINDOW_BYTES
    assert isinstance(ray_stream_factory()(data, "train", 0, 1), LocalStoreStream)  # the default threshold
    assert isinstance(ray_stream_factory(local_up_to_bytes=size)(data, "train", 0, 1), LocalStoreStream)
    assert isinstance(ray_stream_factory(local_up_to_bytes=size - 1)(data, "train", 0, 1), RayDataStream)
    local = ray_stream_factory()(data, "train", 0, 1)
    (first, batch), (second, _) = epoch_batches(local, 0), epoch_batches(local, 1)
    for ids in (first, second):
        assert np.array_equal(np.sort(ids), np.arange(ROWS["train"]))
    assert not np.array_equal(first, second) and np.array_equal(epoch_batches(local, 1)[0], second)
    assert batch["image"].dtype == torch.float32 and tuple(batch["image"].shape) == (32, X_DIM)


def test_a_missing_column_is_named_when_the_stream_opens(ray_session, stores):
    data = config(stores).data
    with pytest.raises(StoreError, match="caption"):
        ray_stream_factory()(type(data)(**{**data.__dict__, "y_column": "caption"}), "val", 0, 1)


def test_a_fusemix_trial_reads_every_split_through_ray_data(ray_session, stores, tmp_path, monkeypatch):
    from mmsearch.orchestration.ray_data import RayDataStream

    opened: list[tuple[str, type]] = []

    def recording_factory(**kwargs):
        factory = ray_stream_factory(**{"local_up_to_bytes": 0, **kwargs})  # these small splits through Ray Data too

        def open_split(data, split, rank, world_size):
            stream = factory(data, split, rank, world_size)
            opened.append((split, type(stream)))
            return stream

        return open_split

    monkeypatch.setattr(jobs_trials, "ray_stream_factory", recording_factory)
    context = LocalContext(tmp_path / "trial")
    recipe_trial("fusemix")(config(stores, epochs=1), context)

    assert sorted(split for split, _ in opened) == ["test", "train", "val"]
    assert all(kind is RayDataStream for _, kind in opened)
    assert [m["epoch"] for m in context.history] == [1]
    assert context.history[-1]["steps"] == ROWS["train"] // 32  # every full batch of the epoch was seen
    starts = list((tmp_path / "trial" / STARTS_DIR).glob("*.json"))
    assert len(starts) == 1
    record = json.loads(starts[0].read_text())
    assert record["node_id"] == ray_session.get_runtime_context().get_node_id() and record["restored_from"] is None


@pytest.mark.slow
def test_tune_fusemix_job_end_to_end_on_existing_latents(ray_session, stores, tmp_path):
    """jobs/tune_fusemix.py's main path at smoke size, one epoch: the latent stores named (nothing
    built), two trials side by side streaming them through Ray Data, best trial, summary and report written."""
    from mmsearch.orchestration.jobs import JOBS, run_job
    from mmsearch.orchestration.jobs.config import JobOptions
    from mmsearch.orchestration.jobs.results import BEST_TRIAL_FILE

    options = JobOptions(smoke_test=True, storage=str(tmp_path), name="fusemix_e2e", overrides=(
        f"recipe.data.store={stores['train']}", f"recipe.data.val_store={stores['val']}",
        f"recipe.data.test_store={stores['test']}", f"recipe.model.x_dim={X_DIM}", f"recipe.model.y_dim={Y_DIM}",
        "recipe.model.out_dim=8", "recipe.data.x_encoder=null", "recipe.data.y_encoder=null",
        "recipe.train.epochs=1"))  # the job's path end to end; epochs under ASHA: test_tune_experiment
    outcome = run_job(JOBS["tune_fusemix"], options)
    experiment = tmp_path / "fusemix_e2e"
    assert outcome.exit_code == 0 and outcome.experiment == str(experiment)
    summary = json.loads((experiment / "experiment_summary.json").read_text())
    assert len(summary["trials"]) == 2 and summary["metric"] == "val_rsum"
    assert all(t["stop_reason"] in ("completed", "stopped_by_asha") for t in summary["trials"])
    assert (summary["failures"], summary["retries"]) == (0, 0)
    best = json.loads((experiment / BEST_TRIAL_FILE).read_text())
    assert best["trial_id"] == summary["best"]["trial_id"] and best["value"] > 0
    assert (experiment / "report" / "report.html").is_file()
