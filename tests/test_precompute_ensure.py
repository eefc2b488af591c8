"""``ensure_dataset``: the data set root jobs ask for, built once into the cache, then reused."""
from __future__ import annotations

import os

from mmsearch.config import load_config
from mmsearch.data.precompute.config import PrecomputeConfig, fingerprint


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


def test_two_builders_of_one_root_take_turns(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from mmsearch.data.precompute import precompute
    from test_precompute_common import scenes_config

    cfg = scenes_config(tmp_path / "ds", num_scenes=10, tables=["regions"], text={"states": False})
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: precompute(cfg), range(2)))
    assert sorted(r.built for r in results) == [False, True]
    assert results[0].card == results[1].card
