"""A task added through the registry alone: ``tests/toy_task.py`` registers ``toy`` (its head, metric,
generated data, result file and labels) and nothing else in the project names it; a short search
and a short derived training of the searched architecture run on it from plain configs."""
from __future__ import annotations

import importlib
import json

import pytest
import torch

from mmsearch.config import ConfigError, load_config
from mmsearch.recipes.context import LocalContext
from mmsearch.recipes.search.recipe import run_search
from mmsearch.recipes.train_derived.recipe import train_derived
from mmsearch.recipes.train_derived.config import TrainDerivedConfig
from mmsearch.tasks import TASKS

MODEL = {"hidden": 16, "head_dim": 8, "word_dim": 8}


@pytest.fixture
def toy_task():
    """tests/toy_task.py, imported (which registers the task) when a test runs, not at collection:
    tests parametrised over TASKS.names() are collected with the project's own tasks."""
    return importlib.import_module("toy_task")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def search_config(out) -> dict:
    return {
        "data": {"root": "synthetic", "task": "toy"},
        "model": {**MODEL, "relation_dim": 8, "enc_depth": 1, "dec_depth": 2},
        "head": {"task": "toy"},
        "search": {"strategy": "proxyless", "epochs": 2, "warmup_epochs": 1, "arch_every": 2, "batch_size": 16,
                   "arch_batch_size": 8, "weight_lr": 3e-3, "num_threads": 1},
        "eval": {"batch_size": 24},
        "output_dir": str(out),
    }


def test_toy_task_searches_and_trains_through_the_registry_alone(toy_task, tmp_path):
    assert "toy" in TASKS.names()
    search_dir = tmp_path / "search"
    context = LocalContext(search_dir)
    searched = run_search(search_config(search_dir), context)
    assert [m["epoch"] for m in context.history] == [1, 2]
    for metrics in context.history:  # the task's primary metric is the search's val_metric
        assert metrics["val_metric"] == metrics["val_toy_acc"] and 0.0 <= metrics["val_metric"] <= 100.0
        assert metrics["val_toy_samples"] == toy_task.PART_SIZES["val"]
    assert searched.history == context.history
    best = json.loads((search_dir / "best_arch.json").read_text())
    assert best["task"] == "toy" and len(best["enc"]) == 1 and len(best["dec"]) == 2

    train_dir = tmp_path / "train"
    cfg = load_config(TrainDerivedConfig, {
        "arch": str(search_dir),  # the searched architecture
        "data": {"root": "synthetic", "task": "toy"},
        "model": MODEL,
        "head": {"task": "toy"},
        "optim": {"lr": 1e-2, "lr_decay_epochs": []},
        "train": {"epochs": 3, "batch_size": 16, "device": "cpu"},
        "eval": {"batch_size": 32},
        "output_dir": str(train_dir),
    })
    context = LocalContext(train_dir)
    result = train_derived(cfg, context)
    history = context.history
    assert [m["epoch"] for m in history] == [1, 2, 3]
    assert all(m["val_metric"] == m["val_toy_acc"] for m in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    rows = json.loads((train_dir / "predictions" / "test_toy_labels.json").read_text())  # the task's result file
    assert len(rows) == toy_task.PART_SIZES["test"] and {r["label"] for r in rows} <= {0, 1}
    assert [r["sample_id"] for r in rows] == [f"test/{i}" for i in range(len(rows))]
    assert result.metrics["test_toy_acc"] == json.loads((train_dir / "predictions" / "test_metrics.json").read_text())["toy_acc"]


def test_toy_configs_and_labels_come_from_the_registry(toy_task):
    with pytest.raises(ConfigError, match="head.hidden_scale"):
        load_config(TrainDerivedConfig, {"data": {"task": "toy"}, "head": {"task": "toy", "hidden_scale": -1.0}})
    with pytest.raises(ConfigError, match=r"data.task is 'toyy'.*known tasks: vqa, itm, vg, toy"):
        load_config(TrainDerivedConfig, {"data": {"task": "toyy"}})
    with pytest.raises(ConfigError, match=r"head.task \('vqa'\) does not match data.task \('toy'\)"):
        load_config(TrainDerivedConfig, {"data": {"task": "toy"}, "head": {"task": "vqa"}})
    from mmsearch.report.style import metric_label

    assert metric_label("val_metric", "toy") == "validation toy accuracy (%)"
    # its search job: tests/test_jobs_config.py::test_a_registered_task_gets_a_search_job (Ray is imported there anyway)
