"""Streamed rows through Ray Data (``data.regions: stream``; regions, and with ``text_input:
states`` the token states): search trials
(``RayDataTaskData``) get the local reader's batches exactly; Ray Train workers
(``RayDataShard``) get disjoint, equal, complete shares per epoch, one rank of one equals the
one-process batches, a resumed epoch is the same epoch; a shard broken mid-epoch names its file.
Each pass is a real Ray Data execution on the session's Ray instance."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mmsearch.data.table_rows import TableRowReader
from mmsearch.data.store import open_store
from mmsearch.data.synthetic import SyntheticTaskData
from mmsearch.orchestration.ray_task_rows import (RayDataTaskData, ray_data_task_data, read_planned_rows, reads_through_ray_data,
                                                  streams_rows)
from mmsearch.orchestration.train_rows import LocalShard, RayDataShard, worker_shard
from test_precompute_common import shared_scenes
from test_tasks_streaming import assert_same_batches, opened, reshard

pytestmark = pytest.mark.ray
TASKS = ("vqa", "itm", "vg")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return reshard(Path(shared_scenes(tmp_path_factory).root), tmp_path_factory.mktemp("rows") / "scenes")


@pytest.mark.parametrize("task", TASKS)
def test_planned_rows_are_the_rows_the_stream_reads(root, task):
    """The Ray Data task's reader returns, tagged by batch and stream, exactly the rows the
    worker's own stream would read (regions, token states, ITM's negatives' states)."""
    from mmsearch.orchestration.ray_task_rows import RayDataTaskRows

    data = opened(root, task, "stream", text_input="states")
    positions = [np.array([5, 0, 9, 3]), np.array([1, 2])]
    import pyarrow as pa

    names = tuple(data.row_readers("train"))
    table = pa.concat_tables([RayDataTaskRows(data).plan_block("train", i, p) for i, p in enumerate(positions)])
    assert names == (("regions", "text", "negatives") if task == "itm" else ("regions", "text"))
    rows = read_planned_rows(table, data.row_readers("train"), names)
    assert rows.column("batch").to_pylist() == table.column("batch").to_pylist() and rows.num_rows == table.num_rows
    first = RayDataTaskRows(data)._by_stream("train", rows.filter(np.asarray(rows.column("batch")) == 0))
    assert first["text"].num_rows == 4 and first["regions"].num_rows <= 4
    assert_same_batches([data.collate_rows("train", positions[0], first)], [data.collate_rows("train", positions[0])])
    with pytest.raises(ValueError, match="ascending"):
        TableRowReader(open_store(os.path.join(root, "train")).table("regions"), ("features",)).read_rows(np.array([1, 0]), np.array([0, 0]))


def test_rows_given_to_a_memory_data_set_are_refused(root):
    data = opened(root, "vqa", "memory")
    assert data.batch_plan("train", np.array([0])) == {} and not streams_rows(data)
    rows = TableRowReader(open_store(os.path.join(root, "train")).table("regions"), ("features", "boxes")).read_rows(np.array([0]), np.array([0]))
    with pytest.raises(ValueError, match=r"streams \[\]"):
        data.collate_rows("train", np.array([0]), {"regions": rows})


@pytest.mark.parametrize("text_input", ["tokens", "states"])
@pytest.mark.parametrize("task", TASKS)
def test_a_trials_ray_data_batches_are_the_local_readers(ray_session, root, task, text_input):
    """What a search trial under Tune iterates (weights, arch, val; shuffled or not) is exactly
    what the local reader gives, every streamed row received through Ray Data."""
    data, local = opened(root, task, "stream", text_input=text_input, ray_data_min_mib=0), opened(root, task, "memory", text_input=text_input)
    assert isinstance(ray_data_task_data(data), RayDataTaskData) and ray_data_task_data(local) is local
    wrapped = RayDataTaskData(data, local_start=False)  # every batch through Ray Data, none read here
    for part, shuffle in (("weights", True), ("arch", True), ("val", False)):
        assert_same_batches(wrapped.batches(part, batch_size=4, epoch=2, seed=1, shuffle=shuffle),
                            local.batches(part, batch_size=4, epoch=2, seed=1, shuffle=shuffle))
    assert wrapped.stats()["ray_data_rows"] > 0 and wrapped.stats()["local_batches"] == 0
    assert data._split("train").regions.reads == data._split("val").regions.reads == 0
    if text_input == "states":  # the token states came through Ray Data too: the trial read none
        assert data._split("train").text_rows.reads == data._split("val").text_rows.reads == 0
    assert np.array_equal(wrapped.arch_images(), local.arch_images())  # the rest of the data set's interface


@pytest.mark.slow
def test_a_search_trial_over_a_streamed_store_reads_through_ray_data_and_matches_memory(ray_session, root, tmp_path):
    """The search as a Tune trial runs it (``recipe_trial``): with streamed regions its rows come
    through Ray Data, and its numbers are the in-memory run's exactly."""
    import json
    import math

    from mmsearch.config import load_config
    from mmsearch.orchestration.jobs.trials import recipe_trial
    from mmsearch.recipes.context import LocalContext
    from mmsearch.recipes.search.config import SearchConfig

    def search(regions):
        cfg = load_config(SearchConfig, {
            "data": {"root": root, "task": "vqa", "regions": regions, "ray_data_min_mib": 0},
            "model": {"hidden": 32, "head_dim": 16, "enc_depth": 1, "dec_depth": 2},
            "head": {"task": "vqa", "flat_mlp_size": 32},
            "search": {"strategy": "proxyless", "epochs": 2, "warmup_epochs": 1, "arch_every": 1, "batch_size": 4,
                       "arch_batch_size": 4, "max_steps_per_epoch": 3, "num_threads": 1},
            "eval": {"batch_size": 8},
        })
        context = LocalContext(tmp_path / regions)
        recipe_trial("search")(cfg, context)
        return context.history

    keys = ("w_loss", "a_loss", "val_metric", "arch", "weight_steps", "arch_steps")
    memory, stream = search("memory"), search("stream")
    assert len(memory) == len(stream) == 2 and "ray_data_rows" not in memory[-1]
    for a, b in zip(memory, stream):
        assert json.dumps({k: a[k] for k in keys}) == json.dumps({k: b[k] for k in keys})  # exact, NaN included
    # every batch's rows came once, through Ray Data or read by the trial while Ray Data started
    delivered = [h["ray_data_rows"] + h["local_rows"] for h in stream]
    assert delivered[-1] > delivered[0] > 0 and math.isfinite(stream[-1]["val_metric"])


@pytest.mark.parametrize("task, block", [("vqa", 1), ("itm", 1), ("vg", 1), ("vqa", 8)])
def test_one_rank_of_one_gets_the_one_process_batches_through_ray_data(ray_session, root, task, block):
    data = opened(root, task, "stream", ray_data_min_mib=0, shuffle_block=block)
    one_process = opened(root, task, "memory", shuffle_block=block)
    assert streams_rows(data)
    assert isinstance(worker_shard(data, rank=0, world_size=1, batch_size=4, seed=3, drop_last=False), RayDataShard)
    shard = RayDataShard(data, rank=0, world_size=1, batch_size=4, seed=3, drop_last=False, local_start=False)
    for epoch in (0, 1):
        assert_same_batches(shard.epoch(epoch), one_process.batches("train", batch_size=4, epoch=epoch, seed=3))
    assert shard.rows.blocks_received >= 1 and shard.rows.rows_received >= 2 * -(-data.num_samples("train") // 4)  # each batch: >= 1 image row, via Ray Data
    assert data._split("train").regions.reads == 0  # and the worker read no row group itself


def test_ranks_share_each_epoch_disjointly_and_completely_and_a_resumed_epoch_repeats(ray_session, root):
    data = opened(root, "vqa", "stream")
    count = data.num_samples("train")
    shards = [RayDataShard(data, rank=r, world_size=2, batch_size=4, seed=7, drop_last=False, local_start=False) for r in range(2)]
    for epoch in (0, 1):
        ids = [[q for batch in shard.epoch(epoch) for q in batch.meta["question_id"]] for shard in shards]
        assert len(ids[0]) == len(ids[1]) == count // 2 and not set(ids[0]) & set(ids[1])
        assert len(set(ids[0]) | set(ids[1])) == count - count % 2
        if epoch == 0:
            first = ids
    assert first != ids  # a new order each epoch
    again = RayDataShard(data, rank=1, world_size=2, batch_size=4, seed=7, drop_last=False, local_start=False)  # a resumed worker
    assert [q for batch in again.epoch(1) for q in batch.meta["question_id"]] == ids[1]


def test_a_shard_broken_mid_epoch_fails_naming_the_file(ray_session, root, tmp_path):
    import shutil

    broken = Path(shutil.copytree(root, tmp_path / "broken"))
    data = opened(str(broken), "vqa", "stream")
    shard = RayDataShard(data, rank=0, world_size=1, batch_size=4, seed=0, drop_last=False, local_start=False)
    files = open_store(str(broken / "train")).table("regions").manifest.shards
    victim = broken / "train" / files[-1].file
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # after the data set was opened
    with pytest.raises(Exception, match=files[-1].file.replace(".", r"\.")):
        list(shard.epoch(0))


@pytest.mark.parametrize("task", ["vqa", "itm"])
def test_the_first_batches_are_read_here_while_ray_data_starts_then_it_takes_over(ray_session, root, task):
    """``local_start``: a first pass starts at once on batches read in the process (with its own
    uncached readers: the data set's reader and cache untouched) and passes started after Ray Data
    is up come through it; every batch is the local reader's exactly either way."""
    data, local = opened(root, task, "stream", text_input="states"), opened(root, task, "memory", text_input="states")
    wrapped = RayDataTaskData(data)
    assert_same_batches(wrapped.batches("weights", batch_size=3, epoch=0, seed=5),
                        local.batches("weights", batch_size=3, epoch=0, seed=5))
    first = wrapped.stats()
    assert first["local_batches"] >= 1 and first["local_rows"] > 0 and data._split("train").text_rows.reads == 0
    assert wrapped.rows._ray_data_up.is_set()  # the pass ended with the small first execution
    assert_same_batches(wrapped.batches("arch", batch_size=3, epoch=1, seed=5), local.batches("arch", batch_size=3, epoch=1, seed=5))
    later = wrapped.stats()
    assert later["local_batches"] == first["local_batches"] and later["ray_data_rows"] > first["ray_data_rows"]
    assert data._split("train").regions.reads == 0


def test_a_store_under_ray_data_min_mib_is_read_by_the_trial_or_worker_itself(ray_session, root):
    """Ray Data's start costs a process seconds: a training split streamed from fewer stored MiB
    than ``data.ray_data_min_mib`` is read by the trial or worker itself (no Ray task at all)."""
    stored = sum(s.bytes for r in opened(root, "vqa", "stream").row_readers("train").values() for s in r.table.manifest.shards)
    above = -(-stored // 2**20)  # the first whole MiB the store does not reach
    small, exact = opened(root, "vqa", "stream", ray_data_min_mib=above), opened(root, "vqa", "stream", ray_data_min_mib=above - 1)
    assert stored < above * 2**20 and not reads_through_ray_data(small) and reads_through_ray_data(exact)
    assert ray_data_task_data(small) is small
    assert isinstance(worker_shard(small, rank=0, world_size=1, batch_size=4, seed=0, drop_last=False), LocalShard)
    assert not reads_through_ray_data(opened(root, "vqa", "memory", ray_data_min_mib=0))  # nothing streamed


def test_a_pass_ends_with_its_first_execution_and_warm_up_done(ray_session, root):
    """A process may be ended at any report (Tune stops a trial at the report that reaches an ASHA
    rung or max_t): a pass, even one cut short or read here in full while Ray Data started, ends
    only once the small first execution and the workers' warm-up have, so no reading task of it is
    in flight then."""
    import ray

    rows = RayDataTaskData(opened(root, "vqa", "stream"), read_tasks=2).rows
    one_pass = rows.batches("weights", [np.arange(2), np.arange(2, 4), np.arange(4, 6)])
    next(one_pass)  # read here: the first execution has started on a thread
    assert rows._warming is not None
    one_pass.close()  # cut short
    assert rows._ray_data_up.is_set() and not rows._warming.is_alive()
    assert ray.wait(rows._warm_up, timeout=0, num_returns=len(rows._warm_up))[1] == []
    later = rows.batches("weights", [np.arange(2)])  # the next pass comes through Ray Data
    assert len(list(later)) == 1 and rows.stats()["ray_data_rows"] > 0


def test_a_ray_train_worker_waits_for_ray_datas_start_only_at_its_end(ray_session, root):
    """A Ray Train worker is not ended at a report: its passes do not wait for Ray Data's start
    (a short first epoch would), ``settle`` at the worker's end does."""
    data = opened(root, "vqa", "stream", ray_data_min_mib=0)
    shard = worker_shard(data, rank=0, world_size=1, batch_size=4, seed=0, drop_last=False)
    assert isinstance(shard, RayDataShard) and not shard.rows.settle_each_pass
    first = shard.epoch(0)
    next(first)
    first.close()  # a pass cut short (train.max_steps_per_epoch)
    shard.settle()
    assert shard.rows._ray_data_up.is_set() and not shard.rows._warming.is_alive()


def test_data_without_a_store_is_collated_by_the_worker():
    data = SyntheticTaskData("vqa", train_images=12, val_images=2, test_images=2)
    shard = worker_shard(data, rank=1, world_size=2, batch_size=5, seed=0, drop_last=True)
    assert isinstance(shard, LocalShard) and not streams_rows(data)
    batches = list(shard.epoch(0))
    assert [b.batch_size for b in batches] == [5] * (data.num_samples("train") // 2 // 5)


@pytest.mark.slow
def test_a_ray_train_run_over_a_streamed_store_gets_its_rows_from_ray_data(ray_session, root, tmp_path):
    """Two DDP workers of a real Ray Train run, the data set streamed (regions and token states):
    both train (weights in sync) on rows that came through Ray Data, and the run reports how many."""
    from mmsearch.orchestration.train import fit_derived

    config = {
        "arch": {"enc": [["self_att"], ["feed_forward"]], "dec": [["guided_att"], ["feed_forward"]]},
        "data": {"root": root, "task": "vqa", "regions": "stream", "text_input": "states", "ray_data_min_mib": 0},
        "model": {"hidden": 32, "head_dim": 16},
        "head": {"task": "vqa", "flat_mlp_size": 32},
        "optim": {"lr": 3e-3, "lr_decay_epochs": []},
        "train": {"epochs": 2, "batch_size": 8, "num_threads": 1, "drop_last": False},
        "eval": {"batch_size": 64},
        "scaling": {"num_workers": 2, "cpus_per_worker": 0.5, "deepspeed_shm_op": False},
        "run": {"name": "streamed", "storage_path": str(tmp_path / "storage")},
    }
    result = fit_derived(config)
    data = opened(root, "vqa", "stream", text_input="states")
    samples = data.num_samples("train")
    assert result.metrics["epoch"] == 2 and result.metrics["weight_sync_spread"] == 0.0
    assert result.metrics["samples"] == 2 * 2 * (samples // 2)
    # Rank 0 (the reporting rank) got exactly its batches' rows (distinct images, then samples), both epochs.
    from mmsearch.recipes.train_derived.data import StridedShard

    order = StridedShard(data, rank=0, world_size=2, batch_size=8, seed=0, drop_last=False)
    plans = [data.batch_plan("train", b) for epoch in (1, 2) for b in order.batch_positions(epoch)]
    assert all(len(p["text"].rows) == len(b) for p, b in zip(plans, (b for e in (1, 2) for b in order.batch_positions(e))))
    expected = sum(len(p["regions"].rows) + len(p["text"].rows) for p in plans)
    # (which of them rank 0 read itself while its Ray Data started depends on timing: each came once)
    assert result.metrics["ray_data_rows"] + result.metrics["local_rows"] == expected


@pytest.mark.s3
def test_ray_data_reads_streamed_rows_from_s3_at_the_endpoint_the_data_set_was_opened_with(ray_session, root, s3_server,
                                                                                         monkeypatch, tmp_path):
    """The Ray Data tasks read an S3 data set from the server the opening process used (the
    endpoint travels with the reader; credentials come from each process's own chain)."""
    import shutil
    import uuid

    import boto3

    bucket = f"mms-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=s3_server["endpoint"], region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    local = Path(shutil.copytree(root, tmp_path / "scenes"))
    for path in local.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"scenes/{path.relative_to(local).as_posix()}")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server["endpoint"])  # this process's setting only: Ray's workers started before
    data = opened(f"s3://{bucket}/scenes", "itm", "stream", region_cache_mib=0, text_input="states")  # all three streams
    readers = data.row_readers("train")
    assert set(readers) == {"regions", "text", "negatives"}
    assert all(r.table.location.endpoint_url == s3_server["endpoint"] for r in readers.values())
    memory = opened(str(local), "itm", "memory", text_input="states")
    assert_same_batches(RayDataTaskData(data, local_start=False).batches("weights", batch_size=6, seed=2, epoch=1),
                        memory.batches("weights", batch_size=6, seed=2, epoch=1))


def test_a_pass_runs_while_every_cpu_is_held(ray_session, root):
    """Trials or training workers may hold every CPU of the cluster: a pass still runs (its reading
    tasks ask for none, and nothing else it starts does: from_arrow's schema task hung here)."""
    import threading

    from ray.util.placement_group import placement_group, remove_placement_group

    held = placement_group([{"CPU": ray_session.cluster_resources()["CPU"]}])
    assert held.wait(30)
    try:
        data = RayDataTaskData(opened(root, "vg", "stream"), local_start=False)
        served = []
        reader = threading.Thread(target=lambda: served.extend(data.batches("weights", batch_size=6, seed=0)), daemon=True)
        reader.start()
        reader.join(timeout=90)
        assert not reader.is_alive(), "the pass did not finish while every CPU was held"
        assert sum(b.batch_size for b in served) == data.num_samples("weights") and data.stats()["ray_data_rows"] > 0
    finally:
        remove_placement_group(held)
