"""Atomic writes: readers never see a half-written file or checkpoint directory."""
from __future__ import annotations

import os
import stat

import pytest

from mmsearch.io import atomic_directory, atomic_write_json, atomic_write_text


def test_atomic_write_replaces_whole_file_with_normal_permissions(tmp_path):
    path = tmp_path / "a" / "result.json"
    atomic_write_json(path, {"x": 1})
    atomic_write_json(path, {"x": 2})
    assert path.read_text().strip().endswith("}") and '"x": 2' in path.read_text()
    mode = stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # not mkstemp's 0600
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]  # no temporary left behind


def test_failed_directory_write_leaves_the_old_one_intact(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target) as scratch:
        (scratch / "state.txt").write_text("epoch 1")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as scratch:
            (scratch / "state.txt").write_text("epoch 2, half")
            raise RuntimeError("crash while writing")
    assert (target / "state.txt").read_text() == "epoch 1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_directory_replacement_is_complete(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target) as scratch:
        (scratch / "a").write_text("1")
        (scratch / "b").write_text("1")
    with atomic_directory(target) as scratch:
        (scratch / "a").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    atomic_write_text(target / "c", "x")
    assert (target / "c").read_text() == "x"
