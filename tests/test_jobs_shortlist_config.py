"""The search jobs' shortlist: section: read from the job file, overridden, shrunk by --smoke-test,
validated with the job (no Ray started)."""
from __future__ import annotations

import pytest

from mmsearch.config import ConfigError
from mmsearch.evaluation import ShortlistSettings
from mmsearch.orchestration.jobs import JOBS
from mmsearch.orchestration.jobs.config import JobOptions
from mmsearch.orchestration.jobs.shortlist import shortlist_train_config


@pytest.mark.parametrize("job", ["search_vqa", "search_itm", "search_vg"])
def test_shortlist_section_is_read_overridden_shrunk_by_the_smoke_test_and_validated(job):
    spec = JOBS[job]
    shipped = spec.load(JobOptions()).shortlist
    assert shipped.enabled is False and shipped.k == 3 and shipped.anchors == ("mcan", "mmnas_prior")
    smoke = spec.load(JobOptions(smoke_test=True, overrides=("shortlist.enabled=true",))).shortlist
    assert (smoke.enabled, smoke.k, smoke.budget, smoke.grace_period) == (True, 2, 2, 1)
    base = shortlist_train_config(spec.task, smoke, "synthetic", smoke_test=True)
    assert base.train.epochs == 2 and base.eval.test is False and base.data.root == "synthetic"
    assert base.data.task == spec.task and base.train.num_threads == 1


def test_bad_shortlist_settings_fail_naming_the_key():
    spec = JOBS["search_vqa"]
    with pytest.raises(ConfigError, match=r"\[shortlist\][\s\S]*k"):
        spec.load(JobOptions(overrides=("shortlist.k=0",)))
    with pytest.raises(ConfigError, match="grace_period"):
        spec.load(JobOptions(overrides=("shortlist.budget=1",)))
    with pytest.raises(ConfigError, match="unknown key"):
        spec.load(JobOptions(overrides=("shortlist.top_k=2",)))
    with pytest.raises(ConfigError, match="trains task 'itm'"):
        shortlist_train_config("vqa", ShortlistSettings(train_config="configs/train/itm.yaml"), "x", smoke_test=False)
    with pytest.raises(ConfigError, match="search jobs"):
        shortlist_train_config(None, ShortlistSettings(), "x", smoke_test=False)


def test_shortlist_run_is_named_after_its_candidates():
    from mmsearch.evaluation import shortlist_candidates
    from mmsearch.nas import random_spec
    from mmsearch.orchestration.jobs.shortlist import shortlist_run_name

    probs = {"enc": [[0.7, 0.3], [0.4, 0.6]], "dec": [[0.1, 0.2, 0.3, 0.4]] * 2}
    one = [{"trial_id": "a", "spec": {**random_spec(2, 2, seed=1).to_dict(), "probs": probs}, "estimate": 3.0}]
    two = [*one, {"trial_id": "b", "spec": random_spec(2, 2, seed=2).to_dict(), "estimate": 1.0}]
    first = shortlist_candidates(one, 2, ("mcan",), (2, 2))
    assert first[0]["spec"]["probs"] == probs  # the search's op probabilities travel with its architecture
    reordered = shortlist_candidates([{**one[0], "estimate": 9.0}], 2, ("mcan",), (2, 2))
    assert shortlist_run_name(first) == shortlist_run_name(reordered)  # same set, other estimates: the same run
    assert shortlist_run_name(shortlist_candidates(two, 2, ("mcan",), (2, 2))) != shortlist_run_name(first)
    assert shortlist_run_name(first).startswith("shortlist-")
