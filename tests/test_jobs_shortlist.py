"""The shortlist stage end to end on generated data (session Ray): candidates and anchors retrained
under ASHA, the winner chosen on val, test evaluated once (never reported by a trial), the same
result as a standalone training with the same seed, and a resumed shortlist that redoes nothing."""
from __future__ import annotations

import json

import pytest

from mmsearch.evaluation import ShortlistSettings
from mmsearch.nas import load_arch_spec, mcan_prior_spec, random_spec
from mmsearch import storage
from mmsearch.orchestration.jobs.shortlist import SEARCH_BEST_ARCH_FILE, SHORTLIST_FILE, run_shortlist, shortlist_train_config
from mmsearch.orchestration.jobs.trials import STARTS_DIR
from mmsearch.orchestration.settings import TuneSettings

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_shortlist_retrains_candidates_and_anchors_picks_on_val_tests_once_and_resumes_as_done(ray_session, tmp_path, monkeypatch):
    from mmsearch.config import config_to_dict, load_config
    from mmsearch.recipes.train_derived.recipe import train_derived
    from mmsearch.recipes.train_derived.config import TrainDerivedConfig

    settings = ShortlistSettings(enabled=True, k=1, budget=2, grace_period=1, cpus_per_trial=0.5, pool=1)
    base = shortlist_train_config("vqa", settings, "synthetic", smoke_test=True)
    tune = TuneSettings(experiment_name="exp", metric="val_metric", mode="max", storage_path=str(tmp_path), max_failures=0,
                        resources={"cpus_per_trial": 0.5, "reserve_cpus_for_data": 0})
    location = storage.resolve_storage(str(tmp_path)).child("exp")
    searched = [{"trial_id": "t1", "spec": random_spec(2, 2, seed=5).to_dict(), "estimate": 50.0},
                {"trial_id": "t2", "spec": mcan_prior_spec(2, 2).to_dict(), "estimate": 40.0}]  # below the top 1
    experiment = tmp_path / "exp"
    experiment.mkdir()
    (experiment / "best_arch.json").write_text(json.dumps({**searched[0]["spec"], "source": "the search's pick"}))

    record = run_shortlist(location, tune, settings, base, searched, (2, 2), verbose=0)
    rows = record["rows"]
    assert [r["label"] for r in rows] == ["searched1", "pool1", "mcan", "mmnas_prior"]  # the top 1, a draw, both anchors
    assert rows[0]["origin"] == "search trial t1" and rows[1]["estimate"] is None and rows[2]["estimate"] is None
    assert rows[1]["origin"] == "drawn uniformly from the search space"  # t1's spec carries no op probabilities
    assert all(r["val_per_epoch"] and r["val_per_epoch"][0][0] == 1 for r in rows)
    full = [r for r in rows if r["epoch"] == 2]
    assert full and record["winner"]["label"] == max(full, key=lambda r: (r["val"], -rows.index(r)))["label"]
    assert record["test_evaluations"] == 1 and 0 <= record["winner"]["test"]["vqa_acc"] <= 100

    # The trials never saw the test split: no trial reported a test_* metric.
    reported = [json.loads(line) for p in experiment.glob("shortlist-*/*/result.json") for line in p.read_text().splitlines()]
    assert reported and not any(k.startswith("test_") for r in reported for k in r)

    # best_arch.json is the winner and says so; the search's own pick is kept.
    winner_spec = load_arch_spec(experiment / "best_arch.json")
    assert winner_spec.source.startswith(f"shortlist winner {record['winner']['label']}")
    assert json.loads((experiment / SEARCH_BEST_ARCH_FILE).read_text())["source"] == "the search's pick"

    # The report: the shortlist figure and caption, and the shortlist experiment's own report (its ASHA ladder).
    from mmsearch.report import build_report
    from mmsearch.report.plots_shortlist import shortlist_caption, shortlist_figure

    assert len(shortlist_figure(record).axes) == 2
    assert f"Winner on val: {record['winner']['label']}" in shortlist_caption(record)
    assert (build_report(str(next(experiment.glob("shortlist-*")))).parent / "learning_curves.png").is_file()

    # Determinism per seed: the MCAN anchor's first epoch equals a standalone training with its config and seed.
    mcan = next(r for r in rows if r["label"] == "mcan")
    spec = json.loads(next(experiment.glob("shortlist_candidates/shortlist-*/mcan.json")).read_text())
    direct = train_derived(load_config(TrainDerivedConfig, {**config_to_dict(base), "arch": spec, "output_dir": str(tmp_path / "direct")}))
    assert direct.history[0]["val_metric"] == pytest.approx(mcan["val_per_epoch"][0][1], abs=1e-6)

    # Resumed: nothing is trained or evaluated again.
    saved = (experiment / SHORTLIST_FILE).read_bytes()
    starts = sorted(experiment.glob(f"shortlist-*/*/{STARTS_DIR}/*.json"))

    def never(*args, **kwargs):
        raise AssertionError("a finished shortlist ran an experiment again")

    monkeypatch.setattr("mmsearch.orchestration.experiment.run_experiment", never)
    again = run_shortlist(location, tune, settings, base, searched, (2, 2), verbose=0)
    assert again["winner"] == record["winner"] and (experiment / SHORTLIST_FILE).read_bytes() == saved
    assert sorted(experiment.glob(f"shortlist-*/*/{STARTS_DIR}/*.json")) == starts
    assert load_arch_spec(experiment / "best_arch.json").same_architecture(winner_spec)
