"""``ensure_dataset``: the data set root jobs ask for, built once into the cache, then reused."""
from __future__ import annotations

import os

from mmsearch.config import load_config
from mmsearch.data.precompute_config import PrecomputeConfig, fingerprint


def test_ensure_dataset_builds_once_into_the_cache(tmp_path, monkeypatch, capsys):
    from mmsearch.orchestration.precompute import ensure_dataset

    monkeypatch.setenv("MMSEARCH_CACHE", str(tmp_path / "cache"))
    overrides = ["source.scenes.num_scenes=10", "tables=[regions,vqa]"]
    root = ensure_dataset(None, overrides, backend="local")
    cfg = load_config(PrecomputeConfig, None, overrides)
    assert root == str(tmp_path / "cache" / f"scenes-{fingerprint(cfg)}")
    assert f"written to {root}" in capsys.readouterr().out
    card = os.path.join(root, "dataset.json")
    before = os.stat(card).st_mtime_ns
    assert ensure_dataset(cfg, backend="local") == root  # same data, any backend: reused, nothing runs
    assert ensure_dataset(cfg) == root  # backend ray: a complete root does not even start Ray
    assert os.stat(card).st_mtime_ns == before and capsys.readouterr().out == ""
