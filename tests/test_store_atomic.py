"""Latent store: the manifest is the commit point; failed or crashed writes never corrupt a store."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mmsearch.data.store import MANIFEST_NAME, StoreError, StoreWriter, open_store, scalar, vector
from mmsearch.data.store.synthetic import write_synthetic_pairs

LAYOUT = {"row_group_rows": 100, "shard_rows": 200}


def ids_of(uri) -> np.ndarray:
    return open_store(uri).table("pairs").read_all(["id"])["id"]


def shard_files(path) -> list:
    return sorted(p.name for p in (path / "pairs").iterdir())


def test_crash_mid_rewrite_leaves_old_store_intact(tmp_path):
    """A writer process killed mid-write (shards and a temp file on disk, no manifest yet)."""
    uri = tmp_path / "st"
    write_synthetic_pairs(str(uri), 500, image_dim=8, text_dim=4, **LAYOUT)
    before = (uri / MANIFEST_NAME).read_bytes()
    crash = textwrap.dedent(
        f"""
        import os, numpy as np
        from mmsearch.data.store import StoreWriter, scalar, vector
        w = StoreWriter({str(uri)!r}, dataset="synthetic", split="train", overwrite=True, row_group_rows=100, shard_rows=200)
        w.add_table("pairs", {{"id": scalar("int64"), "image": vector(8), "text": vector(4)}})
        w.write_batch("pairs", {{"id": np.arange(1000, 1550), "image": np.ones((550, 8)), "text": np.ones((550, 4))}})
        os._exit(3)  # no commit, no cleanup: as if the machine died
        """
    )
    result = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    # The crashed write left two finished shards and one open temp shard behind ...
    files = shard_files(uri)
    assert sum(f.endswith(".tmp") for f in files) == 1 and len(files) == 3 + 2 + 1
    # ... but the store is the old one, complete and verified.
    assert (uri / MANIFEST_NAME).read_bytes() == before
    np.testing.assert_array_equal(ids_of(uri), np.arange(500))


def test_failed_write_cleans_up_and_keeps_old_store(tmp_path):
    uri = tmp_path / "st"
    write_synthetic_pairs(str(uri), 300, image_dim=8, text_dim=4, **LAYOUT)
    old_files = shard_files(uri)
    with pytest.raises(RuntimeError, match="encoder blew up"):
        with StoreWriter(str(uri), dataset="synthetic", split="train", overwrite=True, **LAYOUT) as writer:
            writer.add_table("pairs", {"id": scalar("int64"), "image": vector(8), "text": vector(4)})
            writer.write_batch("pairs", {"id": np.arange(250), "image": np.zeros((250, 8)), "text": np.zeros((250, 4))})
            raise RuntimeError("encoder blew up")
    assert shard_files(uri) == old_files  # the aborted write removed its own shards and temp file
    np.testing.assert_array_equal(ids_of(uri), np.arange(300))


def test_overwrite_replaces_and_removes_old_shards(tmp_path):
    uri = tmp_path / "st"
    write_synthetic_pairs(str(uri), 300, image_dim=8, text_dim=4, **LAYOUT)
    old_files = set(shard_files(uri))
    write_synthetic_pairs(str(uri), 120, image_dim=8, text_dim=4, overwrite=True, **LAYOUT)
    assert not old_files & set(shard_files(uri))
    np.testing.assert_array_equal(ids_of(uri), np.arange(120))


def test_existing_store_needs_overwrite(tmp_path):
    write_synthetic_pairs(str(tmp_path / "st"), 10, image_dim=8, text_dim=4)
    with pytest.raises(StoreError, match="already exists.*overwrite=True"):
        StoreWriter(str(tmp_path / "st"), dataset="synthetic", split="train")


def test_store_without_manifest_refuses_to_open(tmp_path):
    uri = tmp_path / "st"
    write_synthetic_pairs(str(uri), 300, image_dim=8, text_dim=4, **LAYOUT)
    (uri / MANIFEST_NAME).unlink()
    with pytest.raises(StoreError, match=r"no latent store here .*2 shard file\(s\) without a manifest -- an incomplete write"):
        open_store(uri)
    with pytest.raises(StoreError, match="no latent store here"):
        open_store(tmp_path / "never_written")


def test_writer_is_single_use(tmp_path):
    writer = StoreWriter(str(tmp_path / "st"), dataset="d", split="s")
    writer.add_table("pairs", {"id": scalar("int64")})
    writer.write_batch("pairs", {"id": np.arange(3)})
    writer.commit()
    with pytest.raises(StoreError, match="already committed"):
        writer.write_batch("pairs", {"id": np.arange(3)})


def test_overwrite_replaces_an_unreadable_store(tmp_path):
    uri = tmp_path / "st"
    write_synthetic_pairs(str(uri), 50, image_dim=8, text_dim=4)
    (uri / MANIFEST_NAME).write_text("{ truncated")
    write_synthetic_pairs(str(uri), 20, image_dim=8, text_dim=4, overwrite=True)
    np.testing.assert_array_equal(ids_of(uri), np.arange(20))


def test_killed_write_leftovers_are_removed_by_the_next_successful_write(tmp_path):
    """Issue 12 §5: a killed write (finished shards and an open ``.part-*.parquet.tmp``, no
    manifest) leaves files behind; the next write that commits removes them, and only them."""
    uri = tmp_path / "st"
    write_synthetic_pairs(str(uri), 300, image_dim=8, text_dim=4, **LAYOUT)
    killed = StoreWriter(str(uri), dataset="synthetic", split="train", overwrite=True, **LAYOUT)
    killed.add_table("pairs", {"id": scalar("int64"), "image": vector(8), "text": vector(4)})
    killed.write_batch("pairs", {"id": np.arange(350), "image": np.ones((350, 8)), "text": np.ones((350, 4))})
    killed._done = True  # never commits nor aborts: as if the process was killed here
    assert any(f.endswith(".parquet.tmp") for f in shard_files(uri)) and len(shard_files(uri)) == 2 + 1 + 1
    (uri / "pairs" / "notes.txt").write_text("not ours")  # a file the writer did not name stays
    write_synthetic_pairs(str(uri), 150, image_dim=8, text_dim=4, overwrite=True, **LAYOUT)
    manifest_files = sorted(s.file.split("/")[1] for s in open_store(str(uri)).meta.tables["pairs"].shards)
    assert shard_files(uri) == sorted([*manifest_files, "notes.txt"])
    np.testing.assert_array_equal(ids_of(uri), np.arange(150))
