"""Latent store through Ray Data: manifest-exact reads, bounded blocks, per-epoch shuffle, Train shards."""
from __future__ import annotations

import shutil
import threading
import uuid

import numpy as np
import pytest
import torch

from mmsearch.storage import resolve_storage
from mmsearch.data.store import LocalStoreStream, StoreWriter, open_store, scalar, sequence, vector
from mmsearch.data.store.synthetic import write_synthetic_pairs

pytestmark = pytest.mark.ray

ROWS = 2000


@pytest.fixture(scope="module")
def pairs_table(tmp_path_factory):
    uri = tmp_path_factory.mktemp("ray") / "st"
    write_synthetic_pairs(str(uri), ROWS, image_dim=64, text_dim=32, dtype="float16", row_group_rows=250, shard_rows=500)
    table = open_store(uri).table("pairs")
    # A leftover shard of a crashed write sits in the table directory; it must never be read.
    first = uri / table.manifest.shards[0].file
    shutil.copy(first, first.with_name("part-crashedwrite-00000.parquet"))
    return table


def ids_of(batches) -> np.ndarray:
    return np.concatenate([b["id"].numpy() for b in batches])


def test_dataset_reads_manifest_shards_in_bounded_blocks(ray_session, pairs_table):
    from mmsearch.orchestration.ray_data import store_dataset

    dataset = store_dataset(pairs_table, columns=["id", "image"], target_block_bytes=64 * 1024)
    rows, block_bytes = 0, []
    for bundle in dataset.iter_internal_ref_bundles():
        for block in bundle.blocks:
            rows += block.metadata.num_rows
            block_bytes.append(block.metadata.size_bytes)
    assert rows == ROWS  # the orphan shard (500 more rows) was not read
    # 2000 rows x (64 x 2 + 8) bytes = 272 KB, cut into blocks of about the 64 KiB target.
    assert len(block_bytes) >= 4 and max(block_bytes) <= 2 * 64 * 1024
    assert dataset.columns() == ["id", "image"]


def test_epochs_see_every_row_once_in_new_orders(ray_session, pairs_table):
    from mmsearch.data.store import BatchStream
    from mmsearch.orchestration.ray_data import RayDataStream

    stream = RayDataStream.from_store(pairs_table, columns=["id", "image", "text"], shuffle_buffer_rows=600)
    assert isinstance(stream, BatchStream) and stream.rows_per_epoch == ROWS
    orders = [ids_of(stream.epoch(e, 256, seed=0)) for e in range(2)]
    for order in orders:
        assert np.array_equal(np.sort(order), np.arange(ROWS))
        assert (order != np.arange(ROWS)).mean() > 0.9
    assert (orders[0] != orders[1]).mean() > 0.9
    # Reproducible: a resumed run (a new stream) sees epoch 1 in the same order.
    again = RayDataStream.from_store(pairs_table, columns=["id"], shuffle_buffer_rows=600)
    np.testing.assert_array_equal(ids_of(again.epoch(1, 256, seed=0)), orders[1])


def test_same_batch_format_as_the_local_stream(ray_session, tmp_path):
    from mmsearch.orchestration.ray_data import RayDataStream

    rng = np.random.default_rng(0)
    n = 300
    with StoreWriter(str(tmp_path / "st"), dataset="d", split="s", row_group_rows=64) as writer:
        writer.add_table(
            "regions",
            {"uid": scalar("string"), "idx": scalar("int64"), "feats": sequence(8), "boxes": sequence(4, "float32"), "pooled": vector(8)},
        )
        writer.write_batch(
            "regions",
            {
                "uid": [f"u{i}" for i in range(n)],
                "idx": np.arange(n),
                "feats": [rng.standard_normal((1 + i % 6, 8)) for i in range(n)],
                "boxes": [rng.random((1 + i % 6, 4)) for i in range(n)],
                "pooled": rng.standard_normal((n, 8)),
            },
        )
    table = open_store(tmp_path / "st").table("regions")
    full = table.read_all()
    local = next(LocalStoreStream(table).epoch(0, 100, seed=1))
    remote = list(RayDataStream.from_store(table).epoch(0, 100, seed=1))
    assert sum(len(b["idx"]) for b in remote) == n
    batch = remote[0]
    assert set(batch) == set(local)
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            assert value.dtype == local[key].dtype and value.ndim == local[key].ndim, key
        else:
            assert isinstance(value, list) and isinstance(local[key], list), key
    for b in remote:  # contents match the stored rows, padding and mask included
        idx = b["idx"].numpy()
        assert b["uid"] == [f"u{i}" for i in idx]
        longest = int(b["feats_lengths"].max())
        np.testing.assert_array_equal(b["feats"].numpy(), full["feats"][idx, :longest])
        np.testing.assert_array_equal(b["boxes_mask"].numpy(), full["boxes_mask"][idx, :longest])
        np.testing.assert_array_equal(b["pooled"].numpy(), full["pooled"][idx])


def test_train_style_shards_split_each_epoch(ray_session, pairs_table):
    """Two consumers of ``streaming_split(2, equal=True)``, as Ray Train hands each worker."""
    from mmsearch.orchestration.ray_data import store_dataset, train_shard_stream

    dataset = store_dataset(pairs_table, columns=["id"], shuffle_seed=11)
    shards = dataset.streaming_split(2, equal=True)
    streams = [train_shard_stream("train", pairs_table, ["id"], shard=s, world_size=2) for s in shards]
    assert [s.rows_per_epoch for s in streams] == [ROWS // 2] * 2
    seen: dict[tuple[int, int], np.ndarray] = {}

    def consume(rank: int) -> None:
        for epoch in range(2):
            seen[rank, epoch] = ids_of(streams[rank].epoch(epoch, 100, seed=3))

    workers = [threading.Thread(target=consume, args=(r,)) for r in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    for epoch in range(2):
        assert [len(seen[r, epoch]) for r in range(2)] == [ROWS // 2] * 2
        assert np.array_equal(np.sort(np.concatenate([seen[0, epoch], seen[1, epoch]])), np.arange(ROWS))
    assert (seen[0, 0][:500] != seen[0, 1][:500]).mean() > 0.9


@pytest.mark.s3
def test_ray_reads_a_store_on_s3(ray_session, s3_server):
    import boto3

    from mmsearch.orchestration.ray_data import RayDataStream

    bucket = f"mms-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_server["endpoint"], region_name="us-east-1").create_bucket(Bucket=bucket)
    # The endpoint travels with the filesystem; the workers find credentials in their own AWS
    # chain (conftest puts the canary credentials in the environment before Ray starts).
    store = resolve_storage(f"s3://{bucket}/st", s3_server["endpoint"])
    write_synthetic_pairs(store, 600, image_dim=16, text_dim=8, row_group_rows=100, shard_rows=200)
    stream = RayDataStream.from_store(open_store(store), "pairs")
    batches = list(stream.epoch(0, 128, shuffle=False))
    np.testing.assert_array_equal(ids_of(batches), np.arange(600))  # unshuffled: storage order
    assert batches[0]["image"].shape == (128, 16) and batches[0]["image"].dtype == torch.float32


@pytest.mark.slow
def test_torch_trainer_workers_stream_their_shards(ray_session, pairs_table, tmp_path):
    """A real Ray Train run: each worker builds its stream from ``ray.train.get_dataset_shard``."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from mmsearch.orchestration.ray_data import store_dataset, train_shard_stream

    out = tmp_path / "seen"
    out.mkdir()

    def loop(config):
        context = ray.train.get_context()
        stream = train_shard_stream("train", config["table"], ["id", "image"])
        for epoch in range(2):
            ids = np.concatenate([b["id"].numpy() for b in stream.epoch(epoch, 128, seed=0)])
            np.save(f"{config['out']}/rank{context.get_world_rank()}_epoch{epoch}.npy", ids)
        assert stream.rows_per_epoch == config["rows"] // 2

    trainer = TorchTrainer(
        loop,
        train_loop_config={"table": pairs_table, "out": str(out), "rows": ROWS},
        scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        run_config=ray.train.RunConfig(storage_path=str(tmp_path / "runs"), name="store_shards"),
        datasets={"train": store_dataset(pairs_table, columns=["id", "image"], shuffle_seed=5)},
    )
    trainer.fit()
    for epoch in range(2):
        parts = [np.load(out / f"rank{rank}_epoch{epoch}.npy") for rank in range(2)]
        assert [len(p) for p in parts] == [ROWS // 2] * 2
        assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(ROWS))
