"""The search job in this process (session Ray) on small generated data, with --then-train."""
from __future__ import annotations

import json
import math

import pytest

from mmsearch.nas import load_arch_spec
from mmsearch.orchestration.jobs import JOBS, run_job
from mmsearch.orchestration.jobs.config import JobOptions
from mmsearch.orchestration.jobs.results import BEST_ARCH_FILE, BEST_TRIAL_FILE, COMPARISON_FILE, RETRAIN_RUN
from mmsearch.orchestration.jobs.trials import STARTS_DIR

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_search_then_train_leaves_best_architecture_comparison_and_report(ray_session, tmp_path):
    options = JobOptions(smoke_test=True, then_train=True, storage=str(tmp_path), name="vqa_handoff",
                         overrides=("recipe.data.root=synthetic", "tune.search_space={seed: {grid: [0, 1]}}"))
    outcome = run_job(JOBS["search_vqa"], options)
    experiment = tmp_path / "vqa_handoff"
    assert outcome.exit_code == 0 and outcome.experiment == str(experiment)

    summary = json.loads((experiment / "experiment_summary.json").read_text())
    assert len(summary["trials"]) == 2
    best = json.loads((experiment / BEST_TRIAL_FILE).read_text())
    assert best["trial_id"] == summary["best"]["trial_id"] and best["value"] == summary["best"]["metric"]
    assert best["searched"]["val_metric"] == pytest.approx(best["value"])  # the metrics of the best epoch

    # The experiment's best architecture is the best trial's own, which sits next to its checkpoints.
    spec = load_arch_spec(experiment / BEST_ARCH_FILE)
    trial_dir = next(p for p in experiment.iterdir() if best["trial_id"] in p.name)
    assert spec.same_architecture(load_arch_spec(trial_dir / BEST_ARCH_FILE))
    assert any(p.name.startswith("checkpoint_") for p in trial_dir.iterdir())
    assert spec.depths == (2, 2)

    comparison = json.loads((experiment / COMPARISON_FILE).read_text())
    assert comparison["searched"]["val_metric"] == pytest.approx(best["value"])
    assert math.isfinite(comparison["retrained"]["val_metric"]) and 0 <= comparison["retrained"]["val_metric"] <= 100
    assert comparison["arch"]["enc"] == list(spec.enc) and comparison["arch"]["dec"] == list(spec.dec)
    assert (experiment / RETRAIN_RUN / "outputs" / "train_result.json").is_file()

    report = experiment / "report"
    assert outcome.report == str(report / "report.html") and (report / "report.html").is_file()
    assert (report / "searched_vs_retrained.png").is_file()

    node = ray_session.get_runtime_context().get_node_id()
    starts = [json.loads(p.read_text()) for p in experiment.glob(f"*/{STARTS_DIR}/*.json")]
    assert len(starts) == 2 and {s["node_id"] for s in starts} == {node}
    assert all(s["restored_from"] is None for s in starts)
