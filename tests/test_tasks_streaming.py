"""``data.regions: stream``: region features read per batch from the store's row groups give
exactly the in-memory batches, resume the same order, stay bounded, and name a broken shard."""
from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from mmsearch.config import ConfigError, load_config
from mmsearch.data.region_rows import StreamedRegions
from mmsearch.data.store import StoreError, StoreWriter, open_store
from mmsearch.data.task_data import TaskDataConfig
from mmsearch.data.tasks import open_task_data
from test_precompute_common import shared_scenes

ROWS_PER_GROUP = 3  # the scenes' 17 / 2 / 5 images per split: several row groups and shards each


def reshard(source: Path, dest: Path, rows_per_group: int = ROWS_PER_GROUP, groups_per_shard: int = 2) -> str:
    """A copy of the data set at ``source`` whose stores have small row groups (the precompute
    job writes one ~8 MiB row group, i.e. the whole table, at this size)."""
    shutil.copytree(source, dest)
    for split_dir in sorted(p for p in dest.iterdir() if (p / "_mmsearch_store.json").exists()):
        store = open_store(str(split_dir))
        tables = {name: (store.meta.tables[name].columns, store.table(name).read_all(float_dtype=None)) for name in store.tables}
        shutil.rmtree(split_dir)
        with StoreWriter(str(split_dir), dataset=store.meta.dataset, split=store.meta.split, attrs=store.meta.attrs,
                         row_group_rows=rows_per_group, shard_rows=rows_per_group * groups_per_shard) as writer:
            for name, (columns, rows) in tables.items():
                writer.add_table(name, columns)
                data = {c: ([v[:n] for v, n in zip(rows[c], rows[f"{c}_lengths"])] if s.kind in ("sequence", "list") else rows[c])
                        for c, s in columns.items()}
                if len(rows[next(iter(columns))]):
                    writer.write_batch(name, data)
    return str(dest)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    built = shared_scenes(tmp_path_factory)
    return reshard(Path(built.root), tmp_path_factory.mktemp("stream") / "scenes")


def opened(root, task, regions, **changes):
    return open_task_data(TaskDataConfig(root=root, task=task, regions=regions, **changes))


def assert_same_batches(left, right):
    left, right = list(left), list(right)
    assert len(left) == len(right) > 0
    for a, b in zip(left, right):
        assert a.meta == b.meta
        for name in ("text_ids", "text_states", "text_mask", "region_feats", "region_boxes", "region_mask", "image_size"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None and y is None) or (x.dtype == y.dtype and torch.equal(x, y)), name
        assert a.targets.keys() == b.targets.keys() and all(torch.equal(a.targets[k], b.targets[k]) for k in a.targets)


def test_the_store_has_many_row_groups(root):
    table = open_store(os.path.join(root, "train")).table("regions")
    assert len(table.manifest.shards) == 3 and sum(len(s.row_groups) for s in table.manifest.shards) == 6  # 17 images


def test_streaming_a_store_with_dense_row_groups_warns_how_to_write_it(root, tmp_path, caplog):
    """Many images per row group make a random-order stream decode that many times what it uses:
    opening such a store for streaming says so and names the layout that fixes it."""
    with caplog.at_level("WARNING", logger="mmsearch.data.region_rows"):
        opened(root, "vqa", "stream").num_samples("train")  # 3 images a group: quiet
    assert not caplog.records
    dense = reshard(Path(root), tmp_path / "dense", rows_per_group=6)  # 17 train images: 6, 6, 5 a group
    with caplog.at_level("WARNING", logger="mmsearch.data.region_rows"):
        opened(dense, "vqa", "stream").num_samples("train")
    (record,) = [r for r in caplog.records if "train" in r.getMessage()]
    assert "'regions' holds 6 images per row group" in record.getMessage()
    assert "layout.row_group_kib=128 layout.row_groups_per_shard=64" in record.getMessage()


def test_streaming_states_from_large_row_groups_warns_how_to_write_it(root, caplog, monkeypatch):
    """Streamed token states read a row group per sample in random order: a sample table with
    large row groups gets the same advice (the threshold lowered below these 3-row groups)."""
    import mmsearch.data.table_rows as table_rows

    with caplog.at_level("WARNING", logger="mmsearch.data.table_rows"):
        opened(root, "vqa", "stream", text_input="states").num_samples("train")
        opened(root, "vqa", "memory", text_input="states").num_samples("train")
    assert not caplog.records
    monkeypatch.setattr(table_rows, "DENSE_GROUP_BYTES", 1000)
    with caplog.at_level("WARNING", logger="mmsearch.data.table_rows"):
        opened(root, "vqa", "stream", text_input="tokens").num_samples("train")  # nothing of it streamed: quiet
        assert not caplog.records
        opened(root, "vqa", "stream", text_input="states").num_samples("train")
        opened(root, "itm", "stream", text_input="states").num_samples("train")
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split("holds")[0].rsplit(":", 1)[1] for m in messages] == [" table 'vqa' ", " table 'captions' ", " table 'negatives' "]
    assert all("layout.row_group_kib=128" in m for m in messages)


@pytest.mark.parametrize("text_input", ["tokens", "states"])
@pytest.mark.parametrize("task", ["vqa", "itm", "vg"])
def test_streamed_batches_equal_the_in_memory_batches(root, task, text_input):
    memory = opened(root, task, "memory", arch_fraction=0.3, limit={"val": 5}, text_input=text_input)
    stream = opened(root, task, "stream", arch_fraction=0.3, limit={"val": 5}, region_cache_mib=0, text_input=text_input)
    for part, epoch in (("weights", 0), ("weights", 3), ("arch", 1), ("train", 2), ("val", 0), ("test", 0)):
        assert stream.num_samples(part) == memory.num_samples(part)
        for shuffle in (True, False):
            assert_same_batches(memory.batches(part, batch_size=7, seed=11, epoch=epoch, shuffle=shuffle),
                                stream.batches(part, batch_size=7, seed=11, epoch=epoch, shuffle=shuffle))
    assert np.array_equal(stream.arch_images(), memory.arch_images())  # weights / arch still divided by image
    positions = np.array([4, 0, 9, 4])
    assert_same_batches([memory.collate_rows("weights", positions)], [stream.collate_rows("weights", positions)])
    split = stream._split("train")
    assert split.features is None and split.boxes is None and split.regions.reads > 0  # nothing held but the batches'
    assert split.regions.stats()["cached_bytes"] == 0
    if text_input == "states":  # the per-token states are read per batch too, and not held
        assert split.states is None and split.text_rows.reads > 0 and split.text_rows.stats()["cached_bytes"] == 0
        if task == "itm":  # and the hard negatives' states
            assert "neg_states" not in split.targets and split.targets["neg_rows"].reads > 0
    else:
        assert split.text_rows is None and split.token_ids is not None


def test_a_shuffle_block_gives_the_same_batches_streamed_or_in_memory_from_fewer_row_groups(root):
    """``data.shuffle_block``: runs of samples shuffled whole, in memory and streamed alike; a
    streamed epoch of token states then reads fewer of the sample table's row groups."""
    text_groups = {}
    for block in (1, 8):
        memory = opened(root, "vqa", "memory", text_input="states", shuffle_block=block)
        stream = opened(root, "vqa", "stream", text_input="states", shuffle_block=block, region_cache_mib=0)
        assert_same_batches(memory.batches("weights", batch_size=8, seed=2, epoch=1),
                            stream.batches("weights", batch_size=8, seed=2, epoch=1))
        text_groups[block] = stream._split("train").text_rows.reads
        order = stream.epoch_order("weights", epoch=1, seed=2)
        assert np.array_equal(np.concatenate(list(stream.batch_positions("weights", batch_size=8, epoch=1, seed=2))), order)
    assert text_groups[8] < text_groups[1]
    with pytest.raises(ConfigError, match="shuffle_block"):
        load_config(TaskDataConfig, {"shuffle_block": 0})


def test_a_resumed_epoch_continues_the_same_order(root):
    def epoch_order(data, epoch):
        return [(b.meta["question_id"], b.region_feats) for b in data.batches("weights", batch_size=5, seed=4, epoch=epoch)]

    ran = opened(root, "vqa", "stream", region_cache_mib=1)
    for epoch in range(2):
        epoch_order(ran, epoch)  # a run that went through epochs 0 and 1 (its cache warm)
    restarted = opened(root, "vqa", "stream", region_cache_mib=1)  # a run restarted at epoch 2
    memory = opened(root, "vqa", "memory")
    for a, b, c in zip(epoch_order(ran, 2), epoch_order(restarted, 2), epoch_order(memory, 2), strict=True):
        assert a[0] == b[0] == c[0] and torch.equal(a[1], b[1]) and torch.equal(a[1], c[1])
    assert epoch_order(ran, 2) != epoch_order(ran, 3)


def test_the_row_group_cache_stays_within_its_bytes(root):
    table = open_store(os.path.join(root, "train")).table("regions")
    one_group = StreamedRegions(table, 0)._read(0).nbytes
    regions = StreamedRegions(table, int(2.5 * one_group))  # room for two row groups
    order = np.random.default_rng(0).permutation(len(regions))
    for start in range(0, len(order), 4):
        regions.batch(order[start:start + 4])
        assert 0 < regions.stats()["cached_bytes"] <= 2.5 * one_group and regions.stats()["cached_row_groups"] < 6
    assert regions.reads > 6  # groups were dropped and read again
    everything = StreamedRegions(table, 2**30)
    everything.batch(order), everything.batch(order)
    assert everything.reads == 6  # a big enough cache reads each row group once



def test_every_streamed_table_of_every_split_shares_one_cache_budget(root):
    data = opened(root, "vqa", "stream", region_cache_mib=1, text_input="states")
    for part in ("train", "val"):
        for _ in data.batches(part, batch_size=8, seed=0, epoch=0):
            pass
    train, val = data._split("train"), data._split("val")
    caches = {id(rows.cache) for rows in (train.regions, train.text_rows, val.regions, val.text_rows)}
    assert caches == {id(data.stream_cache)}
    cache = data.stream_cache
    assert 0 < cache.nbytes <= 2**20 and cache.max_bytes == 2**20  # one MiB for the four tables, not one each
    held = {(key[0], key[1]) for key in cache._groups}  # (store, table) of every row group held
    assert {name for _, name in held} == {"regions", "vqa"}  # region rows and question states in one budget
    assert train.regions.stats()["cached_bytes"] == val.text_rows.stats()["cached_bytes"] == cache.nbytes

def test_config_names_the_bad_key():
    with pytest.raises(ConfigError, match="regions"):
        load_config(TaskDataConfig, {"regions": "disk"})
    with pytest.raises(ConfigError, match="region_cache_mib"):
        load_config(TaskDataConfig, {"regions": "stream", "region_cache_mib": -1})
    assert load_config(TaskDataConfig, {}).regions == "memory"


def _shard(root, split="train", index=1, table="regions") -> Path:
    table = open_store(os.path.join(root, split)).table(table)
    return Path(root) / split / table.manifest.shards[index].file


@pytest.mark.parametrize("table", ["regions", "vqa"])
@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_a_shard_damaged_during_an_epoch_fails_naming_the_file(root, tmp_path, damage, table):
    """Region rows, and the token states streamed from the sample table, alike."""
    copy = str(tmp_path / "copy")
    shutil.copytree(root, copy)
    data = opened(copy, "vqa", "stream", region_cache_mib=0, text_input="states")
    batches = data.batches("train", batch_size=4, seed=1, shuffle=False)
    next(batches)  # the epoch has started: the first shard is open, the store was checked
    shard = _shard(copy, table=table, index=-1)
    raw = shard.read_bytes()
    if damage == "truncated":
        shard.write_bytes(raw[: len(raw) // 2])
    else:  # one byte flipped in the streamed column's data: the page's CRC no longer matches
        import pyarrow.parquet as pq

        chunks = [pq.ParquetFile(shard).metadata.row_group(0).column(c) for c in range(pq.ParquetFile(shard).metadata.num_columns)]
        streamed = max(chunks, key=lambda c: c.total_compressed_size)  # features / states: by far the largest
        flipped = bytearray(raw)
        flipped[streamed.data_page_offset + streamed.total_compressed_size // 2] ^= 0xFF
        shard.write_bytes(bytes(flipped))
    with pytest.raises(StoreError, match=rf"table '{table}', shard {shard.parent.name}/{shard.name}"):
        list(batches)


@pytest.mark.s3
def test_streaming_from_s3(root, s3_server, monkeypatch, tmp_path):
    import boto3

    root = reshard(Path(root), tmp_path / "few_files", groups_per_shard=100)  # one shard a table: fewer requests

    bucket = f"mms-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=s3_server["endpoint"], region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    for path in Path(root).rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"scenes/{path.relative_to(root).as_posix()}")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server["endpoint"])
    uri = f"s3://{bucket}/scenes"
    stream = opened(uri, "vg", "stream", region_cache_mib=0)
    assert_same_batches(opened(root, "vg", "memory").batches("weights", batch_size=6, seed=2, epoch=1),
                        stream.batches("weights", batch_size=6, seed=2, epoch=1))
    batches = stream.batches("train", batch_size=4, seed=1, shuffle=False)
    next(batches)
    shard = _shard(root, index=0)
    key = f"scenes/train/{shard.parent.name}/{shard.name}"
    client.put_object(Bucket=bucket, Key=key, Body=shard.read_bytes()[:1000])
    with pytest.raises(StoreError, match=rf"s3://{bucket}/scenes/train: table 'regions', shard {shard.parent.name}/{shard.name}"):
        list(batches)


@pytest.mark.slow
def test_a_search_run_is_the_same_with_streamed_regions(root, tmp_path):
    """The supernet search recipe on the store: streamed regions give the in-memory run's numbers exactly."""
    from mmsearch.recipes.context import LocalContext
    from mmsearch.recipes.search.config import SearchConfig
    from mmsearch.recipes.search.recipe import run_search

    def search(regions):
        cfg = load_config(SearchConfig, {
            "data": {"root": root, "task": "vg", "regions": regions, "region_cache_mib": 0},
            "model": {"hidden": 32, "head_dim": 16, "enc_depth": 1, "dec_depth": 2},
            "head": {"task": "vg", "flat_mlp_size": 32},
            "search": {"strategy": "proxyless", "epochs": 2, "warmup_epochs": 1, "arch_every": 1, "batch_size": 4,
                       "arch_batch_size": 4, "max_steps_per_epoch": 3, "num_threads": 1},
            "eval": {"batch_size": 8},
        })
        return run_search(cfg, LocalContext(tmp_path / regions)).history

    keys = ("w_loss", "a_loss", "val_metric", "arch", "weight_steps", "arch_steps")
    memory, stream = search("memory"), search("stream")
    assert len(memory) == len(stream) == 2
    for a, b in zip(memory, stream):
        assert json.dumps({k: a[k] for k in keys}) == json.dumps({k: b[k] for k in keys})  # exact, NaN included
    assert memory[1]["arch_steps"] > 0 and math.isfinite(memory[1]["a_loss"])
