"""Latent store: write/read round trips for every column kind and dtype, layout, manifest."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from mmsearch.data.store import (
    MANIFEST_NAME,
    ColumnSpec,
    StoreError,
    StoreWriter,
    list_of,
    open_store,
    scalar,
    sequence,
    vector,
)

N = 1000


def mixed_records(n: int, seed: int = 0) -> dict:
    """One of each column kind, with ragged lengths including empty records."""
    rng = np.random.default_rng(seed)
    return {
        "uid": [f"img{i:05d}" for i in range(n)],
        "idx": np.arange(n, dtype=np.int64),
        "score": rng.random(n).astype(np.float32),
        "flag": rng.random(n) < 0.5,
        "img16": rng.standard_normal((n, 12)).astype(np.float32),
        "img32": rng.standard_normal((n, 7)).astype(np.float32),
        "regions": [rng.standard_normal((i % 5, 6)).astype(np.float32) for i in range(n)],
        "boxes": [rng.random((i % 5, 4)).astype(np.float32) * 100 for i in range(n)],
        "states16": [rng.standard_normal(((i * 7) % 4, 3)).astype(np.float32) for i in range(n)],
        "tokens": [np.arange(1, 1 + (i % 9), dtype=np.int64) for i in range(n)],
        "answer_scores": [rng.random(i % 3).astype(np.float32) for i in range(n)],
    }


MIXED_SPEC = {
    "uid": scalar("string"),
    "idx": scalar("int64"),
    "score": scalar("float32"),
    "flag": scalar("bool"),
    "img16": vector(12, "float16", encoder="enc_a"),
    "img32": vector(7, "float32"),
    "regions": sequence(6, "float32", encoder="enc_b"),
    "boxes": sequence(4, "float32"),
    "states16": sequence(3, "float16"),
    "tokens": list_of("int32"),
    "answer_scores": list_of("float32"),
}


def write_mixed(path, n: int = N, **kwargs):
    records = mixed_records(n)
    with StoreWriter(str(path), dataset="scenes", split="val", row_group_rows=128, shard_rows=384, **kwargs) as writer:
        writer.add_table("items", MIXED_SPEC)
        for lo in range(0, n, 300):  # batches that straddle row groups and shards
            writer.write_batch("items", {k: v[lo : lo + 300] for k, v in records.items()})
    return records


def test_round_trip_every_kind_and_dtype(tmp_path):
    records = write_mixed(tmp_path / "st")
    store = open_store(tmp_path / "st", check_nan=True)
    table = store.table("items")
    assert table.num_rows == N
    got = table.read_all()

    assert got["uid"] == records["uid"]
    np.testing.assert_array_equal(got["idx"], records["idx"])
    np.testing.assert_array_equal(got["flag"], records["flag"])
    np.testing.assert_array_equal(got["score"], records["score"])
    np.testing.assert_array_equal(got["img32"], records["img32"])
    assert got["img16"].dtype == np.float32 and got["img16"].shape == (N, 12)
    np.testing.assert_array_equal(got["img16"], records["img16"].astype(np.float16).astype(np.float32))

    for name, stored in (("regions", np.float32), ("boxes", np.float32), ("states16", np.float16)):
        dim = MIXED_SPEC[name].dim
        lengths = np.array([len(r) for r in records[name]])
        assert got[name].shape == (N, lengths.max(), dim)
        np.testing.assert_array_equal(got[f"{name}_lengths"], lengths)
        np.testing.assert_array_equal(got[f"{name}_mask"], np.arange(lengths.max())[None] >= lengths[:, None])
        for i in (0, 1, 4, 997):
            np.testing.assert_array_equal(got[name][i, : lengths[i]], records[name][i].astype(stored).astype(np.float32))
            assert not got[name][i, lengths[i] :].any()  # zero padding

    lengths = np.array([len(t) for t in records["tokens"]])
    assert got["tokens"].dtype == np.int64 and got["tokens"].shape == (N, 8)
    for i in (0, 5, 8, 999):
        np.testing.assert_array_equal(got["tokens"][i, : lengths[i]], records["tokens"][i])
        assert not got["tokens"][i, lengths[i] :].any()
    np.testing.assert_array_equal(got["tokens_mask"], np.arange(8)[None] >= lengths[:, None])
    np.testing.assert_array_equal(got["answer_scores"][7, :1], records["answer_scores"][7])


def test_keep_stored_float16(tmp_path):
    records = write_mixed(tmp_path / "st", n=300)
    got = open_store(tmp_path / "st").table("items").read_all(["img16", "states16"], float_dtype=None)
    assert got["img16"].dtype == np.float16 and got["states16"].dtype == np.float16
    np.testing.assert_array_equal(got["img16"], records["img16"].astype(np.float16))


def test_manifest_and_shard_layout(tmp_path):
    write_mixed(tmp_path / "st")
    manifest = json.loads((tmp_path / "st" / MANIFEST_NAME).read_text())
    assert manifest["format_version"] == 1
    assert (manifest["dataset"], manifest["split"]) == ("scenes", "val")
    assert manifest["num_rows"] == {"items": N}
    table = manifest["tables"]["items"]
    assert table["columns"]["img16"] == {"kind": "vector", "dtype": "float16", "dim": 12, "encoder": "enc_a"}
    assert table["columns"]["regions"]["encoder"] == "enc_b"
    shards = table["shards"]
    assert [s["rows"] for s in shards] == [384, 384, 232]  # shard_rows=384
    assert shards[0]["row_groups"] == [128, 128, 128]
    assert shards[-1]["row_groups"] == [128, 104]
    for shard in shards:
        path = tmp_path / "st" / shard["file"]
        assert path.stat().st_size == shard["bytes"]
        meta = pq.ParquetFile(path).metadata
        assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == shard["row_groups"]
    assert not list((tmp_path / "st").rglob("*.tmp"))  # temporary names are gone after commit


def test_storage_order_iteration_and_batch_sizes(tmp_path):
    write_mixed(tmp_path / "st")
    table = open_store(tmp_path / "st").table("items")
    batches = list(table.iter_batches(333, columns=["idx", "regions", "tokens", "img16", "flag", "uid"]))
    assert [len(b["idx"]) for b in batches] == [333, 333, 333, 1]
    assert set(batches[0]) >= {"idx", "regions", "regions_mask", "regions_lengths"}
    np.testing.assert_array_equal(np.concatenate([b["idx"] for b in batches]), np.arange(N))
    # Batches are slices across row-group boundaries (non-zero Arrow offsets): contents must match.
    full = table.read_all()
    for b, lo in zip(batches, range(0, N, 333)):
        rows = slice(lo, lo + len(b["idx"]))
        longest = int(b["regions_lengths"].max())
        np.testing.assert_array_equal(b["regions"], full["regions"][rows, :longest])
        np.testing.assert_array_equal(b["tokens"], full["tokens"][rows, : b["tokens"].shape[1]])
        np.testing.assert_array_equal(b["img16"], full["img16"][rows])
        np.testing.assert_array_equal(b["flag"], full["flag"][rows])
        assert b["uid"] == full["uid"][rows]
    assert [len(b["idx"]) for b in table.iter_batches(333, ["idx"], drop_last=True)] == [333] * 3


def test_shuffled_iteration_is_a_permutation(tmp_path):
    write_mixed(tmp_path / "st")
    table = open_store(tmp_path / "st").table("items")
    first = np.concatenate([b["idx"] for b in table.iter_batches(100, ["idx"], shuffle_seed=1)])
    again = np.concatenate([b["idx"] for b in table.iter_batches(100, ["idx"], shuffle_seed=1)])
    other = np.concatenate([b["idx"] for b in table.iter_batches(100, ["idx"], shuffle_seed=2)])
    assert sorted(first.tolist()) == list(range(N))
    np.testing.assert_array_equal(first, again)
    assert (first != other).mean() > 0.9 and (first != np.arange(N)).mean() > 0.9


def test_several_tables_and_attrs(tmp_path):
    rng = np.random.default_rng(0)
    with StoreWriter(str(tmp_path / "st"), dataset="scenes", split="train", attrs={"image_encoder": {"name": "x", "size": 224}}) as w:
        w.add_table("pairs", {"image_id": scalar("string"), "image": vector(5), "text": vector(3)})
        w.add_table("regions", {"image_id": scalar("string"), "feats": sequence(5), "boxes": sequence(4, "float32")})
        w.write_batch("pairs", {"image_id": ["a", "b"], "image": rng.random((2, 5)), "text": rng.random((2, 3))})
        w.write_batch("regions", {"image_id": ["a"], "feats": [rng.random((3, 5))], "boxes": [rng.random((3, 4))]})
    store = open_store(tmp_path / "st", expect={"pairs": {"image": 5, "text": 3}, "regions": {"feats": {"kind": "sequence", "dim": 5}}})
    assert store.tables == ["pairs", "regions"]
    assert store.meta.num_rows == {"pairs": 2, "regions": 1}
    assert store.meta.attrs == {"image_encoder": {"name": "x", "size": 224}}
    assert store.table("regions").read_all()["boxes"].shape == (1, 3, 4)


@pytest.mark.parametrize(
    "spec",
    [
        lambda: ColumnSpec("matrix", "float32", 3),
        lambda: vector(0),
        lambda: vector(4, "int64"),
        lambda: scalar("float16"),
        lambda: list_of("string"),
        lambda: ColumnSpec("scalar", "int64", dim=3),
    ],
)
def test_invalid_column_specs(spec):
    with pytest.raises(StoreError):
        spec()


def test_column_name_clash_with_derived_keys(tmp_path):
    writer = StoreWriter(str(tmp_path / "st"), dataset="d", split="s")
    with pytest.raises(StoreError, match="regions_mask"):
        writer.add_table("t", {"regions": sequence(4), "regions_mask": scalar("bool")})
