"""The supernet search recipe on tiny supernets and synthetic data: every strategy and task runs
and reports, the alternation (warm-up, one architecture step per k weight steps, disjoint parts),
exact resume, artifacts, the CLI, and early failures."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import mmsearch.recipes.search.recipe as search_module
from mmsearch.config import ConfigError, load_config
from mmsearch.data.synthetic import SyntheticTaskData
from mmsearch.tasks import primary_metric
from mmsearch.nas import STRATEGIES, initial_alphas, load_arch_spec
from mmsearch.recipes.context import LocalContext
from mmsearch.recipes.search.recipe import run_search
from mmsearch.recipes.search.config import SearchConfig, resolve_config, supernet_config
from mmsearch.recipes.search.report import arch_string

TASKS = ("vqa", "itm", "vg")
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "search"
TIMING = ("w_step_s", "a_step_s", "train_s", "eval_s", "data_s", "epoch_s", "samples_per_s")
REQUIRED = {
    "epoch", "warmup", "weight_lr", "weight_steps", "arch_steps", "val_metric", "best_val_metric", "best_epoch",
    "w_loss", "a_loss", "arch", "arch_changes", "entropy_enc_mean", "entropy_enc_min", "entropy_dec_mean",
    "entropy_dec_min", "entropy_norm", "enc_self_att", "enc_feed_forward", "dec_self_att", "dec_rel_self_att",
    "dec_guided_att", "dec_feed_forward", "peak_rss_mib", *TIMING,
}


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def datasets() -> dict[str, SyntheticTaskData]:
    return {task: SyntheticTaskData(task, train_images=50, val_images=15, test_images=5) for task in TASKS}


def tiny(task: str = "vqa", strategy: str = "proxyless", dropout: float = 0.0, **search) -> SearchConfig:
    settings = {"strategy": strategy, "epochs": 2, "warmup_epochs": 1, "arch_every": 2, "batch_size": 8,
                "arch_batch_size": 8, "weight_lr": 2e-3, "num_threads": 1, **search}
    return load_config(SearchConfig, {
        "data": {"task": task},
        "model": {"hidden": 32, "head_dim": 16, "enc_depth": 2, "dec_depth": 3, "dropout": dropout, "word_dim": 16},
        "head": {"task": task, "flat_mlp_size": 32, **({"num_candidates": 2} if task == "itm" else {})},
        "search": settings,
        "eval": {"batch_size": 16},
    })


@pytest.mark.parametrize("strategy", STRATEGIES.names())
@pytest.mark.parametrize("task", TASKS)
def test_search_runs_and_reports_every_epoch(datasets, tmp_path, task, strategy):
    context = LocalContext(tmp_path)
    torch.set_num_threads(2)  # the caller's count; the config's (1) is for the run only
    result = run_search(tiny(task, strategy, max_steps_per_epoch=4), context, datasets[task])
    assert torch.get_num_threads() == 2

    history = context.history
    assert [m["epoch"] for m in history] == [1, 2] and result.history == history
    primary = primary_metric(task)
    for m in history:
        assert REQUIRED <= set(m), REQUIRED - set(m)
        assert m["val_metric"] == m[f"val_{primary}"] and math.isfinite(m["val_metric"])
        assert math.isfinite(m["w_loss"]) and m["w_step_s"] > 0 and m["peak_rss_mib"] > 0
        assert m["enc_self_att"] + m["enc_feed_forward"] == 2
        assert sum(m[f"dec_{op}"] for op in ("self_att", "rel_self_att", "guided_att", "feed_forward")) == 3
    assert (history[0]["warmup"], history[0]["arch_steps"], history[1]["arch_steps"]) == (1, 0, 2)
    assert math.isnan(history[0]["a_loss"]) and math.isfinite(history[1]["a_loss"])
    assert history[1]["weight_steps"] == 8

    # Artifacts: per-epoch specs (MMnas file shape), best / final specs, resolved config, checkpoints.
    for m in history:
        spec = load_arch_spec(tmp_path / "arch_history.json", epoch=m["epoch"])
        assert spec.epoch == m["epoch"] and spec.depths == (2, 3) and spec.probs is not None
        assert arch_string(spec) == m["arch"]
    assert result.best_epoch == 2 and result.best_metric == history[1]["val_metric"]  # only searched epochs count
    assert load_arch_spec(tmp_path / "best_arch.json").same_architecture(result.best_spec)
    assert load_arch_spec(tmp_path / "final_arch.json").same_architecture(result.final_spec)
    assert json.loads((tmp_path / "search_result.json").read_text())["ran_on"] == "cpu, fp32"  # where it trained
    assert json.loads((tmp_path / "device.json").read_text())["ran_on"] == "cpu, fp32"  # the same, from the start
    assert result.final_spec.config["model"]["vocab_size"] == datasets[task].info.vocab_size
    saved = load_config(SearchConfig, tmp_path / "config.yaml")
    assert saved.model.region_dim == datasets[task].info.region_dim
    checkpoint = tmp_path / "checkpoints" / "epoch_000002"
    assert {p.name for p in checkpoint.iterdir()} >= {"state.pt", "arch.json", "arch_history.json", "config.yaml", "best_arch.json"}
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch left behind


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_warmup_alternation_and_disjoint_parts(datasets, tmp_path, monkeypatch, strategy):
    data, events = datasets["vqa"], []
    real_weight_step, real_arch_step = search_module.weight_step, search_module.arch_step

    def weight_step(supernet, head, loss, batch, *args, **kwargs):
        events.append(("w", list(batch.meta["sample_id"]), list(batch.meta["image_id"])))
        return real_weight_step(supernet, head, loss, batch, *args, **kwargs)

    def arch_step(supernet, head, loss, batch, *args, **kwargs):
        events.append(("a", list(batch.meta["sample_id"]), list(batch.meta["image_id"])))
        return real_arch_step(supernet, head, loss, batch, *args, **kwargs)

    monkeypatch.setattr(search_module, "weight_step", weight_step)
    monkeypatch.setattr(search_module, "arch_step", arch_step)
    cfg = tiny("vqa", strategy, arch_every=3)
    context = LocalContext(tmp_path, keep_checkpoints=5)
    run_search(cfg, context, data)

    steps = data.num_samples("weights") // 8  # drop_last
    kinds = "".join(kind for kind, _, _ in events)
    assert kinds[:steps] == "w" * steps  # warm-up epoch: weight steps only
    searched = kinds[steps:]
    assert searched == "".join("w" + ("a" if i % 3 == 0 else "") for i in range(1, steps + 1))
    assert [m["arch_steps"] for m in context.history] == [0, steps // 3]

    # Weight steps read only the weights part, architecture steps only the arch part; no image in both.
    w_ids = {i for kind, ids, _ in events if kind == "w" for i in ids}
    a_ids = {i for kind, ids, _ in events if kind == "a" for i in ids}
    parts = {part: {i for b in data.batches(part, batch_size=64) for i in b.meta["sample_id"]} for part in ("weights", "arch")}
    assert w_ids <= parts["weights"] and a_ids <= parts["arch"] and a_ids and not w_ids & a_ids
    w_images = {i for kind, _, images in events if kind == "w" for i in images}
    a_images = {i for kind, _, images in events if kind == "a" for i in images}
    assert not w_images & a_images

    # Warm-up leaves the architecture weights at their initial values; the search then moves them.
    initial = initial_alphas(supernet_config(resolve_config(cfg, data.info)))
    states = [torch.load(tmp_path / "checkpoints" / f"epoch_{e:06d}" / "state.pt", weights_only=True)["supernet"] for e in (1, 2)]
    assert torch.equal(states[0]["enc_alpha"], initial[0]) and torch.equal(states[0]["dec_alpha"], initial[1])
    assert not torch.equal(states[1]["dec_alpha"], initial[1])


class Interrupt(RuntimeError):
    pass


class StopAfter(LocalContext):
    """A local context whose process 'dies' right after persisting the report of epoch ``stop``."""

    def __init__(self, run_dir: Path, stop: int) -> None:
        super().__init__(run_dir)
        self.stop = stop

    def report(self, metrics, checkpoint_dir=None):
        super().report(metrics, checkpoint_dir)
        if metrics["epoch"] >= self.stop:
            raise Interrupt(f"stopped after epoch {metrics['epoch']}")


def _without_timings(history):
    """Metrics without wall-clock figures; NaN (no value) made comparable."""
    return [{k: "nan" if isinstance(v, float) and math.isnan(v) else v for k, v in m.items() if k not in TIMING} for m in history]


def _final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "epoch_000003" / "state.pt", weights_only=True)


@pytest.mark.parametrize(("task", "strategy", "how"), [("vqa", "proxyless", "crash"), ("itm", "spos", "extend"), ("vg", "darts", "crash")])
def test_resume_matches_an_uninterrupted_run(datasets, tmp_path, task, strategy, how):
    data = datasets[task]
    full = run_search(tiny(task, strategy, dropout=0.1, epochs=3, max_steps_per_epoch=5), LocalContext(tmp_path / "full"), data)

    resumed_dir = tmp_path / "resumed"
    if how == "crash":
        with pytest.raises(Interrupt):
            run_search(tiny(task, strategy, dropout=0.1, epochs=3, max_steps_per_epoch=5), StopAfter(resumed_dir, 2), data)
    else:  # a finished 2-epoch search extended to 3 epochs
        run_search(tiny(task, strategy, dropout=0.1, epochs=2, max_steps_per_epoch=5), LocalContext(resumed_dir), data)
    second = LocalContext(resumed_dir)
    resumed = run_search(tiny(task, strategy, dropout=0.1, epochs=3, max_steps_per_epoch=5), second, data)

    assert [m["epoch"] for m in second.history] == [3]  # only the missing epoch ran
    assert _without_timings(resumed.history) == _without_timings(full.history)
    a, b = _final_state(tmp_path / "full"), _final_state(resumed_dir)
    for key in ("supernet", "head"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            if isinstance(a[key][name], torch.Tensor):
                assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert json.loads((tmp_path / "full" / "arch_history.json").read_text()) == json.loads((resumed_dir / "arch_history.json").read_text())
    assert resumed.final_spec.probs == full.final_spec.probs


def test_resume_with_a_changed_config_is_refused(datasets, tmp_path):
    run_search(tiny(epochs=2, max_steps_per_epoch=2), LocalContext(tmp_path), datasets["vqa"])
    with pytest.raises(ValueError, match=r"search\.arch_lr: 0\.1 -> 0\.05"):
        run_search(tiny(epochs=3, max_steps_per_epoch=2, arch_lr=0.05), LocalContext(tmp_path), datasets["vqa"])


def test_validation_cap_and_data_mismatch_fail_early(datasets, tmp_path):
    context = LocalContext(tmp_path / "capped")
    cfg = load_config(SearchConfig, {**_dict(tiny(max_steps_per_epoch=2)), "eval": {"batch_size": 8, "max_samples": 13}})
    run_search(cfg, context, datasets["vqa"])
    assert context.history[-1]["val_vqa_count"] == 13

    bad = load_config(SearchConfig, {**_dict(tiny()), "model": {**_dict(tiny())["model"], "region_dim": 999}})
    with pytest.raises(ValueError, match="model.region_dim is 999 but the data has 16"):
        run_search(bad, LocalContext(tmp_path / "bad"), datasets["vqa"])
    assert not (tmp_path / "bad" / "metrics.jsonl").exists()
    small = load_config(SearchConfig, {**_dict(tiny()), "search": {**_dict(tiny())["search"], "arch_batch_size": 500}})
    with pytest.raises(ValueError, match="'arch' part has .* samples"):
        run_search(small, LocalContext(tmp_path / "small"), datasets["vqa"])


def _dict(cfg: SearchConfig) -> dict:
    from mmsearch.config import config_to_dict

    return config_to_dict(cfg)


def test_cli_runs_a_shipped_config_and_resumes(tmp_path, capsys):
    config = CONFIG_DIR / "vqa.yaml"  # holds `recipe:` and `tune:` sections
    small = ["data.root=synthetic", f"output_dir={tmp_path}", "model.hidden=32", "model.head_dim=16", "model.enc_depth=2",
             "model.dec_depth=3", "head.flat_mlp_size=32", "search.warmup_epochs=1", "search.max_steps_per_epoch=3"]
    assert search_module.main([str(config), *small, "search.epochs=2"]) == 0
    assert "best val_vqa_acc" in capsys.readouterr().out
    assert search_module.main([str(config), *small, "search.epochs=3"]) == 0  # resumes: runs epoch 3 only
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    assert load_arch_spec(tmp_path / "best_arch.json").depths == (2, 3)
    assert search_module.main([str(config), "search.strategy=enas"]) == 2
    assert "search.strategy" in capsys.readouterr().err


def test_bad_configs_fail_before_any_training():
    for override, key in (({"search": {"strategy": "gdas"}}, "search.strategy"),
                          ({"search": {"epochs": 3, "warmup_epochs": 3}}, "search.warmup_epochs"),
                          ({"model": {"dec_pool": ["self_att", "rel_self_att", "guided_att", "zero"]}}, "dec_pool")):
        with pytest.raises(ConfigError, match=key):
            run_search(override)  # validated at the entry point: no data is opened, nothing runs
