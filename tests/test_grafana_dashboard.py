"""The shipped Grafana dashboard queries only series the project exports, with labels they carry.

The live check (every queried series on a running Ray node's Prometheus endpoint during a real
experiment) is in test_tune_experiment.py::test_metrics_callback_counts_trial_states; this one
checks the dashboard file against the gauges the code registers (mmsearch.orchestration.metrics).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from mmsearch.orchestration.metrics import GAUGES

DASHBOARD = Path(__file__).resolve().parents[1] / "cluster" / "grafana" / "mmsearch_dashboard.json"
RAY_LABELS = {"SessionName", "instance", "NodeAddress"}  # labels Ray / Prometheus add to every series
SERIES = re.compile(r"\bray_(mmsearch_[a-z_]+)")


def dashboard_queries() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in data["panels"] for t in p["targets"]]
    queries += [v["definition"] for v in data["templating"]["list"] if v["type"] == "query"]
    return queries


def queried_series() -> set[str]:
    return {name for q in dashboard_queries() for name in SERIES.findall(q)}


def test_every_queried_series_is_a_registered_gauge():
    assert queried_series() == set(GAUGES)  # and every gauge is on the dashboard


def test_queries_use_only_labels_the_series_carry():
    for query in dashboard_queries():
        (name,) = set(SERIES.findall(query))
        used = set(re.findall(r"([A-Za-z_]+)=~", query))
        used |= {label.strip() for group in re.findall(r"by \(([^)]*)\)", query) for label in group.split(",")}
        used |= set(re.findall(r"label_values\([^,]+,\s*([A-Za-z_]+)\)", query))
        assert used <= set(GAUGES[name]) | RAY_LABELS, (query, used - set(GAUGES[name]))


def test_dashboard_shows_the_four_views_with_experiment_and_storage_filters():
    data = json.loads(DASHBOARD.read_text())
    titles = [p["title"] for p in data["panels"]]
    assert titles == ["Trials by state", "Best metric per experiment", "Trial-epochs", "Failures and retries"]
    variables = {v["name"] for v in data["templating"]["list"]}
    assert {"datasource", "experiment", "storage"} <= variables
    assert all(p["datasource"] == "${datasource}" for p in data["panels"])  # works with Ray's Prometheus source


def test_a_trial_counts_as_stopped_by_asha_only_when_asha_recorded_it():
    """The gauge follows ASHA's own record, as the experiment summary does: a trial that ended
    early for another reason is not 'stopped by ASHA', and FIFO stops nothing."""
    from types import SimpleNamespace

    from mmsearch.orchestration.metrics import GAUGES, TrialMetricsCallback, count_trials

    def trial(trial_id, status, epoch):
        return SimpleNamespace(trial_id=trial_id, status=status, last_result={"epoch": epoch}, num_failures=0,
                               metric_analysis={"loss": {"min": float(epoch)}})

    trials = [trial("a", "TERMINATED", 8), trial("b", "TERMINATED", 3), trial("c", "TERMINATED", 2), trial("d", "RUNNING", 4)]
    by_record = count_trials(trials, metric="loss", mode="min", max_t=8, stopped_by_asha={"b": {"rung": 3}})
    assert (by_record.finished, by_record.stopped_by_asha, by_record.running) == (2, 1, 1)
    by_epochs = count_trials(trials, metric="loss", mode="min", max_t=8)  # no record: ended before max_t
    assert (by_epochs.finished, by_epochs.stopped_by_asha) == (1, 2)

    asha = SimpleNamespace(stopped_trials={"c": {"rung": 2}})
    callback = TrialMetricsCallback("exp", metric="loss", mode="min", max_t=8, scheduler=asha)
    callback._gauges = {name: SimpleNamespace(set=lambda *a, **k: None) for name in GAUGES}  # no Ray needed
    assert callback.publish(trials).stopped_by_asha == 1
    callback.scheduler = SimpleNamespace()  # FIFO: no record, nothing stopped by ASHA
    assert callback.publish(trials).stopped_by_asha == 0
