"""Every YAML under configs/ validates against what reads it: a search job file section by section
(the recipe against SearchConfig, tune, dataset, shortlist), a training config against
TrainDerivedConfig, a FuseMix config against FuseMixConfig, tune and data set files against their
settings. Recipe configs name a registered task, and their head agrees with it. A YAML in a folder
no rule covers fails, so a new kind of config gets a rule here. (Content checks of particular
configs live in test_search_config, test_train_config, test_fusemix_configs, test_nas_fusion_*.)"""
from __future__ import annotations

from pathlib import Path

import pytest

from mmsearch.config import read_yaml, validate_config
from mmsearch.data.precompute.config import PrecomputeConfig
from mmsearch.evaluation import ShortlistSettings
from mmsearch.orchestration.jobs.config import split_job_file
from mmsearch.orchestration.settings import TuneSettings
from mmsearch.recipes.fusemix.config import FuseMixConfig
from mmsearch.recipes.search.config import SearchConfig
from mmsearch.recipes.train_derived.config import TrainDerivedConfig
from mmsearch.tasks import TASKS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
YAMLS = sorted(CONFIGS.rglob("*.yaml"))


def _search_job(raw: dict, origin: str) -> list:
    sections = split_job_file(raw, origin)
    assert set(sections) >= {"recipe", "tune"}, f"{origin}: a search job file has recipe: and tune: sections"
    checked = [validate_config(SearchConfig, sections["recipe"], f"{origin} [recipe]"),
               validate_config(TuneSettings, sections["tune"], f"{origin} [tune]")]
    if sections.get("dataset") is not None:
        checked.append(validate_config(PrecomputeConfig, sections["dataset"], f"{origin} [dataset]"))
    if sections.get("shortlist") is not None:
        checked.append(validate_config(ShortlistSettings, sections["shortlist"], f"{origin} [shortlist]"))
    return checked


def _one(cls: type):
    return lambda raw, origin: [validate_config(cls, raw, origin)]


# configs/<folder>/...: how the files of a folder are read
RULES = {
    "search": _search_job,
    "train": _one(TrainDerivedConfig),
    "fusemix": _one(FuseMixConfig),
    "tune": _one(TuneSettings),
    "data": _one(PrecomputeConfig),
}


def test_every_config_folder_has_a_rule():
    folders = {p.relative_to(CONFIGS).parts[0] for p in YAMLS}
    assert folders <= set(RULES), f"configs/ folders without a validation rule: {sorted(folders - set(RULES))}"
    assert len(YAMLS) >= 20  # the shipped configs were found


@pytest.mark.parametrize("path", YAMLS, ids=[str(p.relative_to(CONFIGS)) for p in YAMLS])
def test_config_validates_against_its_recipe(path):
    name = str(path.relative_to(CONFIGS))
    checked = RULES[path.relative_to(CONFIGS).parts[0]](read_yaml(path), name)
    for cfg in checked:
        data, head = getattr(cfg, "data", None), getattr(cfg, "head", None)
        if isinstance(cfg, (SearchConfig, TrainDerivedConfig)):  # the task is registered; the head is its head
            assert data.task in TASKS.names()
            assert head is None or (head.task == data.task and isinstance(head, TASKS.get(data.task).head.config))
