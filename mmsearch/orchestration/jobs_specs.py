"""What differs between the jobs: recipe, trial function, config class, data binding, smoke test.

:data:`JOBS` holds one :class:`JobSpec` per job script (``jobs/search_vqa.py`` is
``main(JOBS["search_vqa"])``). The smoke tests shrink data set, model, epochs, search space and
ASHA ladder so that a job checks its whole path in about a minute on 2 CPUs.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from mmsearch.cli_parsers import JOB_CARDS, search_card
from mmsearch.orchestration.jobs_config import JobConfig, JobOptions, SmokeTest, load_job_config
from mmsearch.orchestration.jobs_data import FUSEMIX_DATA, SEARCH_DATA, DataBinding
from mmsearch.orchestration.jobs_shortlist import SHORTLIST_SMOKE
from mmsearch.orchestration.jobs_trials import fusemix_trial, search_trial
from mmsearch.recipes.fusemix_config import FuseMixConfig
from mmsearch.recipes.search_config import SearchConfig
from mmsearch.tasks import TASKS, task_entry


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """Everything that differs between the jobs."""

    name: str  # "search_vqa"
    description: str
    trial: Callable[..., Any]  # the Tune trial function: fn(config, context)
    config_cls: type
    epochs_key: str  # the recipe's number of epochs (ASHA's max_t)
    default_config: str
    data: DataBinding
    smoke_test: SmokeTest
    default_tune: str | None = None  # for plain recipe configs (no tune: section)
    default_dataset: Mapping[str, Any] | None = None  # for configs without a dataset: section
    defaults: tuple[str, ...] = ()  # overrides applied before everything else
    task: str | None = None  # search jobs: the task (vqa / itm / vg); enables --then-train

    def load(self, options: JobOptions) -> JobConfig:
        return load_job_config(
            dataclasses.replace(options, overrides=(*self.defaults, *options.overrides)),
            config_cls=self.config_cls,
            default_config=self.default_config,
            default_tune=self.default_tune,
            default_dataset=self.default_dataset,
            smoke_test=self.smoke_test,
            data_keys=self.data.keys,
        )


def _search_smoke(task: str) -> SmokeTest:
    """Tiny data set and supernet, 2 epochs (1 warm-up), rungs at epoch 1 and 2: about a minute on 2 CPUs."""
    val = task_entry(task).smoke_val_samples
    return SmokeTest(
        recipe=(
            "search.epochs=2", "search.warmup_epochs=1", "search.arch_every=2", "search.batch_size=16",
            "search.arch_batch_size=16", "search.max_steps_per_epoch=8",
            "model.hidden=32", "model.head_dim=16", "model.relation_dim=16",
            "model.enc_depth=2", "model.dec_depth=2", "head.flat_mlp_size=32",
            f"data.limit={{weights: 256, arch: 64, val: {val}}}", f"eval.batch_size={val}",
        ),
        tune=("num_samples=1", "scheduler.grace_period=1", "scheduler.reduction_factor=2",
              "resources.cpus_per_trial=0.5", "resources.reserve_cpus_for_data=0", "max_failures=1"),
        dataset=("source.scenes.num_scenes=80", "backend=local"),
        shortlist=SHORTLIST_SMOKE,
    )


def search_job(task: str) -> JobSpec:
    """The search job of a registered task; its command line is the card of ``jobs/search_<task>.py``
    (``mmsearch.cli_parsers``), or the same card shape for a task without a job script."""
    card = JOB_CARDS.get(f"search_{task}") or search_card(task_entry(task).name)
    return JobSpec(
        name=f"search_{task}",
        description=card.description,
        trial=search_trial,
        config_cls=SearchConfig,
        epochs_key="search.epochs",
        default_config=card.default_config,
        data=SEARCH_DATA,
        smoke_test=_search_smoke(task),
        default_dataset={},
        task=task,
    )


FUSEMIX_JOB = JobSpec(
    name="tune_fusemix",
    description=JOB_CARDS["tune_fusemix"].description,
    trial=fusemix_trial,
    config_cls=FuseMixConfig,
    epochs_key="train.epochs",
    default_config=JOB_CARDS["tune_fusemix"].default_config,
    default_tune=JOB_CARDS["tune_fusemix"].default_tune,
    default_dataset={"tables": ["pairs"]},  # image and caption latents only: no region crops
    defaults=("recipe.data.backend=ray",),
    data=FUSEMIX_DATA,
    smoke_test=SmokeTest(
        recipe=("train.epochs=2", "train.batch_size=32", "train.num_threads=1", "optim.warmup_steps=2",
                "model.out_dim=32", "model.x={depth: 1, width_factor: 1, dropout: 0.1}",
                "model.y={depth: 1, width_factor: 1, dropout: 0.1}", "eval.batch_size=256"),
        tune=("num_samples=2", "scheduler.grace_period=1", "scheduler.reduction_factor=2",
              "search_space={optim.lr: {loguniform: [3.0e-4, 3.0e-3]}, loss.mixup_alpha: {choice: [0.0, 1.0]}}",
              "resources.cpus_per_trial=0.5", "resources.reserve_cpus_for_data=0.5", "max_failures=1"),
        dataset=("source.scenes.num_scenes=80", "backend=local"),
    ),
)


# One job per job script (the cards of mmsearch.cli_parsers): a search job per task that has one.
SEARCH_TASKS = tuple(card.task for card in JOB_CARDS.values() if card.task is not None)
JOBS: dict[str, JobSpec] = {**{f"search_{task}": search_job(task) for task in SEARCH_TASKS}, "tune_fusemix": FUSEMIX_JOB}


def job_spec(name: str) -> JobSpec:
    """A job by name: one of :data:`JOBS`, or ``search_<task>`` for any registered task."""
    if name in JOBS:
        return JOBS[name]
    task = name.removeprefix("search_")
    if name.startswith("search_") and task in TASKS.names():
        return search_job(task)
    raise KeyError(f"unknown job {name!r}; jobs: {', '.join(JOBS)}")


__all__ = ["FUSEMIX_JOB", "JOBS", "SEARCH_TASKS", "JobSpec", "job_spec", "search_job"]
