"""bench/bench_streamed_search.py on toy data: every case and seed runs, the streamed search is the
in-memory one exactly, and the shuffle_block case is compared seed by seed."""
from __future__ import annotations

import json

import pytest

from test_bench_provenance import check_provenance, load_bench
from test_precompute_common import shared_scenes


def _bench():
    return load_bench("bench_streamed_search.py")


@pytest.mark.slow
def test_tiny_run_compares_stream_and_block16_with_memory(tmp_path, tmp_path_factory):
    toy_store = str(shared_scenes(tmp_path_factory).root)
    out = tmp_path / "streamed_search.json"
    args = ["--seeds", "2", "--data-root", toy_store, "--out", str(out), "--set", "search.epochs=2", "--set", "search.warmup_epochs=1",
            "--set", "search.max_steps_per_epoch=4", "--set", "model.enc_depth=1", "--set", "model.dec_depth=2", "--set", "head.grounding_weight=0",
            "--set", "search.batch_size=8", "--set", "search.arch_batch_size=8"]
    assert _bench().main(args) == 0
    report = json.loads(out.read_text())
    check_provenance(report, "bench_streamed_search.py", args)
    assert len(report["runs"]) == 6 and {r["case"] for r in report["runs"]} == {"memory", "stream", "block16"}
    assert report["summary"]["stream_identical_to_memory"] is True
    by = {(r["case"], r["seed"]): r for r in report["runs"]}
    assert all(by["stream", s]["final_val_metric"] == by["memory", s]["final_val_metric"] for s in (0, 1))
    diffs = report["summary"]["block16_minus_memory"]["per_seed"]
    assert diffs == [round(by["block16", s]["final_val_metric"] - by["memory", s]["final_val_metric"], 3) for s in (0, 1)]


@pytest.mark.parametrize("bad, says", [(["--seeds", "0"], "--seeds and --workers"),
                                       (["--data-root", "/nonexistent/scenes"], "no precomputed data set there"),
                                       (["--set", "search.epochs=-3"], "search.epochs"),
                                       (["--set", "serch.epochs=2"], "serch")])
def test_bad_settings_exit_2_before_any_search(tmp_path, capsys, bad, says):
    with pytest.raises(SystemExit) as exit_:
        _bench().main([*bad, "--out", str(tmp_path / "bad.json")])
    assert exit_.value.code == 2 and not (tmp_path / "bad.json").exists() and says in capsys.readouterr().err
