"""A job: a registered recipe (its entry declares the rest) plus the card of its command line.

:data:`JOBS` holds one :class:`JobSpec` per job script (``jobs/search_vqa.py`` runs
``JOBS["search_vqa"]``). A job's trial function, config class, fidelity key, data binding and
smoke-test overrides all come from its recipe's :class:`~mmsearch.recipes.entry.Recipe` in
``RECIPES``; nothing here names a recipe's keys. The smoke tests shrink data set, model, epochs,
search space and ASHA ladder so that a job checks its whole path in about a minute on 2 CPUs.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from mmsearch.cli_parsers import JOB_CARDS, JobCard, search_card
from mmsearch.orchestration.jobs.config import JobConfig, JobOptions, load_job_config
from mmsearch.orchestration.jobs.shortlist import SHORTLIST_SMOKE
from mmsearch.orchestration.jobs.trials import RecipeTrial
from mmsearch.recipes.entry import DataBinding, Recipe, SmokeTest
from mmsearch.recipes.registry import recipe_entry
from mmsearch.tasks import TASKS, task_entry


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """A job: its recipe's entry and what its command line shows."""

    name: str  # "search_vqa"
    description: str
    recipe: Recipe
    default_config: str
    default_tune: str | None = None  # for plain recipe configs (no tune: section)
    task: str | None = None  # task-driven jobs (the searches: vqa / itm / vg); enables --then-train and the shortlist

    @property
    def trial(self) -> Callable[..., Any]:
        """The Tune trial function: ``<recipe>_trial(config, context)``."""
        return RecipeTrial(self.recipe)

    @property
    def config_cls(self) -> type:
        return self.recipe.config_cls

    @property
    def epochs_key(self) -> str:
        return self.recipe.epochs_key

    @property
    def data(self) -> DataBinding:
        return self.recipe.data

    @property
    def default_dataset(self) -> Mapping[str, Any] | None:
        return self.recipe.data.dataset

    @property
    def defaults(self) -> tuple[str, ...]:
        return tuple(f"recipe.{text}" for text in self.recipe.job_defaults)

    @property
    def smoke_test(self) -> SmokeTest:
        smoke = self.recipe.smoke(self.task)
        return dataclasses.replace(smoke, shortlist=SHORTLIST_SMOKE) if self.task is not None else smoke

    def load(self, options: JobOptions) -> JobConfig:
        return load_job_config(
            dataclasses.replace(options, overrides=(*self.defaults, *options.overrides)),
            config_cls=self.config_cls,
            default_config=self.default_config,
            default_tune=self.default_tune,
            default_dataset=self.default_dataset,
            smoke_test=self.smoke_test,
            data=self.data,
        )


def recipe_job(card: JobCard) -> JobSpec:
    """The job of a card: its recipe looked up in ``RECIPES``."""
    return JobSpec(name=card.name, description=card.description, recipe=recipe_entry(card.recipe),
                   default_config=card.default_config, default_tune=card.default_tune, task=card.task)


def search_job(task: str) -> JobSpec:
    """The search job of a registered task; its command line is the card of ``jobs/search_<task>.py``
    (``mmsearch.cli_parsers``), or the same card shape for a task without a job script."""
    return recipe_job(JOB_CARDS.get(f"search_{task}") or search_card(task_entry(task).name))


# One job per job script (the cards of mmsearch.cli_parsers): a search job per task that has one.
SEARCH_TASKS = tuple(card.task for card in JOB_CARDS.values() if card.task is not None)
JOBS: dict[str, JobSpec] = {name: recipe_job(card) for name, card in JOB_CARDS.items()}


def job_spec(name: str) -> JobSpec:
    """A job by name: one of :data:`JOBS`, or ``search_<task>`` for any registered task."""
    if name in JOBS:
        return JOBS[name]
    task = name.removeprefix("search_")
    if name.startswith("search_") and task in TASKS.names():
        return search_job(task)
    raise KeyError(f"unknown job {name!r}; jobs: {', '.join(JOBS)}")


__all__ = ["JOBS", "SEARCH_TASKS", "JobSpec", "job_spec", "recipe_job", "search_job"]
