"""Latent store: bad input and damaged stores fail with errors that name the problem."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mmsearch.data.store import MANIFEST_NAME, StoreError, StoreWriter, open_store, scalar, sequence, vector
from mmsearch.data.store.synthetic import write_synthetic_pairs

LAYOUT = {"row_group_rows": 100, "shard_rows": 200}


@pytest.fixture
def pairs_store(tmp_path):
    uri = tmp_path / "st"
    write_synthetic_pairs(str(uri), 500, image_dim=16, text_dim=8, dataset="scenes", split="val", **LAYOUT)
    return uri


def first_shard(uri):
    manifest = json.loads((uri / MANIFEST_NAME).read_text())
    return uri / manifest["tables"]["pairs"]["shards"][0]["file"]


def test_expectations_pass_when_met(pairs_store):
    store = open_store(
        pairs_store,
        expect={"pairs": {"image": 16, "text": {"dim": 8, "dtype": "float16", "kind": "vector"}, "id": None}},
        dataset="scenes",
        split="val",
    )
    assert store.meta.num_rows == {"pairs": 500}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"expect": {"pairs": {"image": 1280}}}, r"table 'pairs', column 'image': dimension is 16, expected 1280"),
        ({"expect": {"pairs": {"audio": 128}}}, r"no column \(modality\) 'audio'"),
        ({"expect": {"regions": {}}}, r"missing table 'regions'"),
        ({"expect": {"pairs": {"text": {"dtype": "float32"}}}}, r"column 'text': dtype is 'float16', expected 'float32'"),
        ({"expect": {"pairs": {"text": {"encoder": "minilm"}}}}, r"encoder is 'synthetic', expected 'minilm'"),
        ({"dataset": "vqa_v2"}, r"data set 'scenes', expected 'vqa_v2'"),
        ({"split": "test"}, r"split 'val', expected 'test'"),
    ],
)
def test_expectation_mismatch(pairs_store, kwargs, message):
    with pytest.raises(StoreError, match=message) as info:
        open_store(pairs_store, **kwargs)
    assert str(pairs_store) in str(info.value)


def test_truncated_shard(pairs_store):
    shard = first_shard(pairs_store)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match=rf"table 'pairs', shard pairs/{shard.name}: file has \d+ bytes, manifest says {len(data)}"):
        open_store(pairs_store)


def test_missing_shard(pairs_store):
    first_shard(pairs_store).unlink()
    with pytest.raises(StoreError, match="file is missing"):
        open_store(pairs_store, verify="size")


def test_corrupted_shard_of_the_right_size(pairs_store):
    shard = first_shard(pairs_store)
    data = bytearray(shard.read_bytes())
    data[-200:-8] = b"\x07" * 192  # smash the footer, keep the size
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=rf"shard pairs/{shard.name}: unreadable Parquet"):
        open_store(pairs_store)


def test_shard_swapped_for_another_valid_file(pairs_store):
    """A valid Parquet file that is not the committed one (rows differ) is caught by the footer check."""
    manifest = json.loads((pairs_store / MANIFEST_NAME).read_text())
    shards = manifest["tables"]["pairs"]["shards"]
    last, first = pairs_store / shards[-1]["file"], pairs_store / shards[0]["file"]
    first.write_bytes(last.read_bytes())
    shards[0]["bytes"] = last.stat().st_size  # even if the manifest's size were updated too
    (pairs_store / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="file holds 100 rows, manifest says 200"):
        open_store(pairs_store)


def test_nan_check(tmp_path):
    image = np.ones((300, 16), dtype=np.float32)
    image[237, 3] = np.nan
    with StoreWriter(str(tmp_path / "st"), dataset="d", split="s", check_finite=False, **LAYOUT) as writer:
        writer.add_table("pairs", {"id": scalar("int64"), "image": vector(16)})
        writer.write_batch("pairs", {"id": np.arange(300), "image": image})
    open_store(tmp_path / "st")  # not asked to check: opens
    with pytest.raises(StoreError, match=r"column 'image', shard pairs/part-\w+-00001.parquet: NaN or inf at row 37"):
        open_store(tmp_path / "st", check_nan=True)


def test_writer_rejects_nan_and_float16_overflow(tmp_path):
    writer = StoreWriter(str(tmp_path / "st"), dataset="d", split="s")
    writer.add_table("pairs", {"image": vector(4), "regions": sequence(2, "float32")})
    with pytest.raises(StoreError, match=r"table 'pairs', column 'image': non-finite"):
        writer.write_batch("pairs", {"image": np.full((2, 4), np.nan), "regions": [np.zeros((1, 2))] * 2})
    with pytest.raises(StoreError, match="beyond float16 range"):
        writer.write_batch("pairs", {"image": np.full((2, 4), 1e6), "regions": [np.zeros((1, 2))] * 2})
    with pytest.raises(StoreError, match="column 'regions': non-finite"):
        writer.write_batch("pairs", {"image": np.zeros((2, 4)), "regions": [np.zeros((1, 2)), np.full((3, 2), np.inf)]})


@pytest.mark.parametrize(
    "batch, message",
    [
        ({"id": np.arange(2), "image": np.zeros((2, 5)), "boxes": [np.zeros((1, 4))] * 2}, r"column 'image': expected shape \[n, 4\], got \(2, 5\)"),
        ({"id": np.arange(2), "image": np.zeros((2, 4)), "boxes": [np.zeros((1, 3))] * 2}, r"column 'boxes': each record must be \[length, 4\]"),
        ({"id": np.arange(2), "image": np.zeros((2, 4))}, r"missing: \['boxes'\]"),
        ({"id": np.arange(2), "image": np.zeros((2, 4)), "boxes": [np.zeros((1, 4))] * 2, "x": [1, 2]}, r"unknown: \['x'\]"),
        ({"id": np.arange(3), "image": np.zeros((2, 4)), "boxes": [np.zeros((1, 4))] * 2}, "different row counts"),
        ({"id": np.array([0.5, 1.5]), "image": np.zeros((2, 4)), "boxes": [np.zeros((1, 4))] * 2}, "floating-point values for an int64"),
    ],
)
def test_writer_rejects_bad_batches(tmp_path, batch, message):
    writer = StoreWriter(str(tmp_path / "st"), dataset="d", split="s")
    writer.add_table("pairs", {"id": scalar("int64"), "image": vector(4), "boxes": sequence(4, "float32")})
    with pytest.raises(StoreError, match=message):
        writer.write_batch("pairs", batch)
    with pytest.raises(StoreError, match="was not declared"):
        writer.write_batch("regions", batch)


def test_empty_store(tmp_path):
    with StoreWriter(str(tmp_path / "st"), dataset="d", split="s") as writer:
        writer.add_table("pairs", {"id": scalar("int64")})
    with pytest.raises(StoreError, match=r"store is empty \(tables \['pairs'\] hold no rows\)"):
        open_store(tmp_path / "st")


def test_empty_table_that_is_expected(tmp_path):
    with StoreWriter(str(tmp_path / "st"), dataset="d", split="s") as writer:
        writer.add_table("pairs", {"id": scalar("int64")})
        writer.add_table("vqa", {"id": scalar("int64")})
        writer.write_batch("pairs", {"id": np.arange(3)})
    open_store(tmp_path / "st", expect={"pairs": {"id": None}})
    with pytest.raises(StoreError, match="table 'vqa' is empty"):
        open_store(tmp_path / "st", expect={"vqa": {}})


def test_unknown_columns_and_tables_on_read(pairs_store):
    store = open_store(pairs_store)
    with pytest.raises(StoreError, match=r"has no column\(s\) \['audio'\]"):
        store.table("pairs").read_all(["audio"])
    with pytest.raises(StoreError, match="missing table 'vqa'"):
        store.table("vqa")


def test_foreign_or_future_manifest(pairs_store):
    path = pairs_store / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(StoreError, match="format version 99 is not supported"):
        open_store(pairs_store)
    path.write_text("{ not json")
    with pytest.raises(StoreError, match="manifest is not valid JSON"):
        open_store(pairs_store)
