"""build_report end to end: the files it writes, the page, running / stopped / errored trials,
searched vs retrained, the command line, S3 storage, and a real Tune experiment (toy recipe)."""
from __future__ import annotations

import base64
import io
import json
import re

import pytest
from PIL import Image
from test_report_layout import FakeTrial, arch_history, write_experiment

from mmsearch.storage import resolve_storage
from mmsearch.report import build_report, collect_experiment
from mmsearch.report.cli import main

SEARCH_FIGURES = ("learning_curves.png", "arch_heatmap.png", "search_dynamics.png", "best_arch.png")


def search_trials() -> list[FakeTrial]:
    return [
        FakeTrial("0a1b2_00000", "TERMINATED", [10, 20, 15, 30, 35, 40], {"seed": 0, "search.arch_lr": 0.1}, arch=True),
        FakeTrial("0a1b2_00001", "TERMINATED", [8, 9], {"seed": 1, "search.arch_lr": 0.01}, arch=True),
        FakeTrial("0a1b2_00002", "ERROR", [12, 14, 11], {"seed": 2, "search.arch_lr": 0.03}, arch=True,
                  error="RuntimeError: CUDA out of memory <tried 2 GiB>"),
        FakeTrial("0a1b2_00003", "RUNNING", [9, 22, 31], {"seed": 3, "search.arch_lr": 0.2}, arch=True, torn_last_line=True),
        FakeTrial("0a1b2_00004", "PENDING", [], {"seed": 4, "search.arch_lr": 0.05}),
    ]


@pytest.fixture(scope="module")
def search_report(tmp_path_factory):
    root = write_experiment(tmp_path_factory.mktemp("report") / "search_vqa", search_trials(), stopped=("0a1b2_00001",))
    page = build_report(str(root))
    return root, page


def test_report_files_are_written_next_to_the_page(search_report):
    root, page = search_report
    assert page == root / "report" / "report.html"
    names = {p.name for p in page.parent.iterdir()}
    assert names == {"report.html", *SEARCH_FIGURES, "best_arch.json", "final_arch.json", "best_trial.json"}  # no temp files
    for name in SEARCH_FIGURES:
        with Image.open(page.parent / name) as image:
            assert image.format == "PNG" and image.width >= 500 and image.height >= 250


def test_page_embeds_and_links_every_figure_and_nothing_external(search_report):
    _, page = search_report
    text = page.read_text()
    for name in SEARCH_FIGURES:
        assert f'href="{name}"' in text
        figure = re.search(rf'<figure id="{re.escape(name)}">.*?src="data:image/png;base64,([^"]+)"', text)
        assert figure and base64.b64decode(figure.group(1)) == (page.parent / name).read_bytes()
    sources = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert sources and all(s.startswith("data:image/png;base64,") or re.fullmatch(r"[\w.-]+", s) for s in sources)
    assert "<script" not in text and "http" not in text.replace(str(page.parent.parent), "")


def test_page_lists_every_trial_with_how_it_ended(search_report):
    root, page = search_report
    text = page.read_text()
    rows = dict(re.findall(r'<tr(?: class="best")? id="trial-([\w]+)">(.*?)</tr>', text))
    assert set(rows) == {t.trial_id for t in search_trials()}
    assert "completed (max_t)" in rows["0a1b2_00000"] and "stopped by ASHA" in rows["0a1b2_00001"]
    assert "errored" in rows["0a1b2_00002"] and "running / unfinished" in rows["0a1b2_00003"]
    assert "running / unfinished" in rows["0a1b2_00004"]
    assert re.search(r'<tr class="best" id="trial-0a1b2_00000">', text)  # ranked first, highlighted
    assert "RuntimeError: CUDA out of memory &lt;tried 2 GiB&gt;" in text  # escaped, not markup
    assert "running or interrupted: 2 of 5 trials unfinished" in text
    assert "3 / 6" in rows["0a1b2_00003"]  # the torn 4th report of the running trial is not shown


def test_best_architecture_files(search_report):
    root, page = search_report
    best = search_trials()[0]
    history = arch_history(best)
    trial_dir = root / best.dirname
    source = f"{trial_dir / 'checkpoint_000005' / 'best_arch.json'} (trial {best.trial_id})"  # no best_arch.json in the trial dir
    assert json.loads((page.parent / "best_arch.json").read_text()) == {**history["epoch6"], "source": source}  # peak: epoch 6
    assert (page.parent / "final_arch.json").read_text().strip() == (trial_dir / "checkpoint_000005" / "arch.json").read_text().strip()
    record = json.loads((page.parent / "best_trial.json").read_text())
    assert (record["trial_id"], record["value"], record["epoch"], record["metric"]) == (best.trial_id, 40, 6, "val_metric")
    assert record["checkpoint"] == str(trial_dir / "checkpoint_000005") and record["searched"] == {"val_metric": 40.0}
    arch = " ".join(_short(b[0]) for b in history["epoch6"]["enc"]) + " | " + " ".join(_short(b[0]) for b in history["epoch6"]["dec"])
    assert f'<div class="arch mono">{arch}</div>' in page.read_text()


def _short(name: str) -> str:
    return {"self_att": "SA", "feed_forward": "FFN", "rel_self_att": "RSA", "guided_att": "GA"}[name]


def test_a_running_experiment_is_reported_as_it_is_now_and_odd_data_does_not_stop_the_report(tmp_path):
    trials = [FakeTrial("9e9e9_00000", "RUNNING", [1.0, 2.0], {"lr": 0.1}, arch=True),
              FakeTrial("9e9e9_00001", "RUNNING", [1.5], {"lr": 0.2})]
    root = write_experiment(tmp_path / "live", trials)
    history = json.loads((root / trials[0].dirname / "arch_history.json").read_text())
    history["epoch2"]["probs"]["dec"] = "not a matrix"  # a figure that cannot be drawn
    (root / trials[0].dirname / "arch_history.json").write_text(json.dumps(history))
    out = tmp_path / "elsewhere"
    page = build_report(str(root), out)
    assert page == out / "report.html" and not (root / "report").exists()
    text = page.read_text()
    assert "Not everything could be drawn" in text and "arch_heatmap.png" in text.split("Not everything")[1][:200]
    assert (out / "learning_curves.png").is_file()
    # The trial reports another epoch; the rebuilt page shows it.
    with (root / trials[1].dirname / "result.json").open("a") as fh:
        fh.write(json.dumps({"epoch": 2, "val_metric": 7.25, "time_total_s": 3.0}) + "\n")
    text = build_report(str(root), out).read_text()
    assert "7.25" in text and "2 / 6" in text


def test_searched_vs_retrained_from_the_recorded_file(tmp_path):
    root = write_experiment(tmp_path / "exp", [FakeTrial("77777_00000", "TERMINATED", [50.0, 60.0], {}, arch=False)], max_t=2, rungs=())
    (root / "searched_vs_retrained.json").write_text(json.dumps(  # as mmsearch.orchestration.jobs.results writes it
        {"task": "vqa", "metric": "vqa_acc", "searched": {"val_vqa_acc_number": 31.5, "val_metric": 60.0, "val_vqa_count": 400.0},
         "retrained": {"val_metric": 64.25, "best_val_metric": 65.0, "test_vqa_acc": 63.0}}))
    page = build_report(str(root))
    text = page.read_text()
    table = text.split("<h2>Searched vs retrained</h2>")[1].split("</table>")[0]
    cells = re.findall(r"<td class=mono>([^<]+)</td><td class=num>([^<]+)</td><td class=num>([^<]+)</td>", table)
    assert cells == [("val_metric", "60", "64.25"), ("val_vqa_acc_number", "31.5", "–"), ("best_val_metric", "–", "65"),
                     ("test_vqa_acc", "–", "63")]  # comparable first; sample counts left out
    assert (page.parent / "searched_vs_retrained.png").is_file() and 'href="searched_vs_retrained.png"' in text


def test_retrained_result_of_train_derived_is_found(tmp_path):
    rows = [{"val_metric": 55.0}, {"val_metric": 61.0, "test_vqa_acc": 59.5, "test_vqa_count": 80}]
    root = write_experiment(tmp_path / "exp", [FakeTrial("66666_00000", "TERMINATED", [55.0, 61.0], {}, extra=rows)], max_t=2, rungs=())
    (root / "retrain").mkdir()
    (root / "retrain" / "train_result.json").write_text(json.dumps({"metric": "val_vqa_acc", "best_val_metric": 66.5}))
    text = build_report(str(root)).read_text()
    assert re.search(r"<td class=mono>val_vqa_acc</td><td class=num>61</td><td class=num>66.5</td>", text)
    assert "<th>test split (last epoch)</th><td><code>test_vqa_acc=59.5</code></td>" in text


def test_command_line(tmp_path, capsys):
    root = write_experiment(tmp_path / "exp", [FakeTrial("55555_00000", "TERMINATED", [1.0], {})], max_t=1, rungs=())
    assert main([str(root), "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip() == f"Report: {tmp_path / 'out' / 'report.html'}"
    assert main([str(tmp_path / "missing")]) == 2
    assert "is not an mmsearch experiment directory" in capsys.readouterr().err


@pytest.fixture
def bucket(s3_server):
    import time

    import boto3

    name = f"report-{time.monotonic_ns() % 10**9}"
    boto3.client("s3", endpoint_url=s3_server["endpoint"]).create_bucket(Bucket=name)
    return name


@pytest.mark.s3
def test_s3_round_trip(tmp_path, s3_server, bucket):
    import pyarrow.fs as pafs

    trials = search_trials()[:2]
    local = write_experiment(tmp_path / "exp", trials, stopped=("0a1b2_00001",))
    remote = resolve_storage(f"s3://{bucket}/experiments/exp", s3_server["endpoint"])
    pafs.copy_files(str(local), remote.fs_path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=remote.filesystem())

    page = build_report(remote.uri, endpoint_url=s3_server["endpoint"])
    assert page == f"s3://{bucket}/experiments/exp/report/report.html"
    fs = remote.filesystem()
    with fs.open_input_stream(f"{bucket}/experiments/exp/report/report.html") as fh:
        text = fh.read().decode()
    assert all(f'id="trial-{t.trial_id}"' in text for t in trials) and "stopped by ASHA" in text
    with fs.open_input_stream(f"{bucket}/experiments/exp/report/best_arch.json") as fh:
        spec = json.loads(fh.read())
    assert spec.pop("source").startswith(f"s3://{bucket}/experiments/exp/{trials[0].dirname}/")
    assert spec == arch_history(trials[0])["epoch6"]
    with fs.open_input_stream(f"{bucket}/experiments/exp/report/arch_heatmap.png") as fh:
        assert Image.open(io.BytesIO(fh.read())).format == "PNG"
    # The same experiment, read from S3 and written to a local directory.
    data = collect_experiment(remote)
    assert [t.stop_reason for t in data.trials] == ["completed", "stopped_by_asha"]
    assert data.trials[0].checkpoint == f"s3://{bucket}/experiments/exp/{trials[0].dirname}/checkpoint_000005"


@pytest.mark.slow
def test_real_tune_experiment_agrees_with_the_experiment_summary(tmp_path, ray_session):
    """A toy experiment under Ray Tune (ASHA, one trial failing): the report's trial rows equal
    ``summarize_experiment``'s, and the page lists every trial."""
    from test_orchestration_toy_recipe import ToyConfig, register_for_ray, toy_recipe

    from mmsearch.orchestration.experiment import run_experiment, summarize_experiment
    from mmsearch.orchestration.settings import ResourceSettings, SchedulerSettings, TuneSettings

    register_for_ray()
    settings = TuneSettings(
        experiment_name="toy_report", metric="loss", mode="min", storage_path=str(tmp_path),
        search_space={"train.lr": {"grid": [0.05, 0.1, 0.3, 0.6]}},
        scheduler=SchedulerSettings(grace_period=1, reduction_factor=2),
        resources=ResourceSettings(cpus_per_trial=0.5, reserve_cpus_for_data=0.0), max_failures=0,
    )
    base = {"train": {"epochs": 4, "noise": 0.2}, "faults": {"fail_at_epoch": 2, "fail_lr": 0.6}}  # the best fails
    outcome = run_experiment(toy_recipe, ToyConfig, base, settings, epochs_key="train.epochs", verbose=0)
    summary = summarize_experiment(outcome.location)
    data = collect_experiment(outcome.location)
    fields = ("trial_id", "config", "stop_reason", "rung_reached", "last_epoch", "best_metric", "best_epoch", "error")
    assert [tuple(getattr(t, f) for f in fields) for t in data.trials] == [tuple(getattr(t, f) for f in fields) for t in summary.trials]
    assert [t.checkpoint for t in data.trials] == [t.checkpoint_path for t in summary.trials]
    assert data.count("errored") == 1 and data.kind == "generic"
    page = build_report(outcome.location)
    text = page.read_text()
    assert all(f'id="trial-{t.trial_id}"' in text for t in summary.trials) and "injected failure at epoch 2" in text


def test_an_experiment_before_its_first_trial(tmp_path):
    root = write_experiment(tmp_path / "new", [], max_t=4, rungs=(1.0, 2.0))
    text = build_report(str(root)).read_text()
    assert "no trial has started yet" in text and "No trial has reported the metric yet." in text
    assert (root / "report" / "learning_curves.png").is_file() and 'id="trial-' not in text
